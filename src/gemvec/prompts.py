"""Task prompts EmbeddingGemma was trained with, as a Task enum.

The prompt is prepended to the text before tokenisation. Documents use
``title: {title or "none"} | text: ``; every other task uses
``task: {description} | query: ``.
"""

from __future__ import annotations

from enum import Enum

from gemvec.errors import InputError


class Task(str, Enum):
    """What the embedding is for; selects the prompt the model was trained with."""

    QUERY = "query"
    DOCUMENT = "document"
    QUESTION_ANSWERING = "question_answering"
    FACT_CHECKING = "fact_checking"
    CLASSIFICATION = "classification"
    CLUSTERING = "clustering"
    SIMILARITY = "similarity"
    CODE_RETRIEVAL = "code_retrieval"
    SUMMARIZATION = "summarization"

    @property
    def prompt(self) -> str:
        """The prompt for this task (documents: with the title ``none``)."""
        return document_prompt(None) if self is Task.DOCUMENT else _QUERY_PROMPTS[self]


_QUERY_PROMPTS: dict[Task, str] = {
    Task.QUERY: "task: search result | query: ",
    Task.QUESTION_ANSWERING: "task: question answering | query: ",
    Task.FACT_CHECKING: "task: fact checking | query: ",
    Task.CLASSIFICATION: "task: classification | query: ",
    Task.CLUSTERING: "task: clustering | query: ",
    Task.SIMILARITY: "task: sentence similarity | query: ",
    Task.CODE_RETRIEVAL: "task: code retrieval | query: ",
    Task.SUMMARIZATION: "task: summarization | query: ",
}

# Names sentence-transformers and MTEB use for the same prompts.
_ALIASES: dict[str, Task] = {
    "search": Task.QUERY,
    "retrieval": Task.QUERY,
    "qa": Task.QUESTION_ANSWERING,
    "sts": Task.SIMILARITY,
    "sentence_similarity": Task.SIMILARITY,
    "code": Task.CODE_RETRIEVAL,
    "passage": Task.DOCUMENT,
}


def document_prompt(title: str | None) -> str:
    """The document prompt; an empty or missing title becomes ``none`` as in the model card."""
    title = (title or "").strip()
    return f"title: {title or 'none'} | text: "


def parse_task(value: Task | str) -> Task:
    """Accept a Task, its value (``"query"``), its name (``"QUERY"``) or a common alias."""
    if isinstance(value, Task):
        return value
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return Task(key)
    except ValueError:
        choices = ", ".join(t.value for t in Task)
        raise InputError(f"Unknown task {value!r}. Choose one of: {choices}.") from None
