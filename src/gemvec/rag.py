"""RAG: retrieve passages, number them in a prompt, generate, and map ``[n]`` citations back to sources.

    answer = ask(retriever, "Who discovered penicillin?", make_generator("smollm2"))
    answer.text, answer.citations, answer.sources[0].hit.path

The retriever is anything with a ``search(query, k=, mode=, filters=)`` returning passages
(a :class:`gemvec.store.Collection` is one; ``coll.ask(...)`` calls this module).

With ``stream=True`` an :class:`AnswerStream` is returned instead: iterate it for text pieces
as they are generated; its ``sources`` are known before the first piece and its ``answer``
(an :class:`Answer`) once the iteration ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gemvec.errors import InputError
from gemvec.llm import Generator, Message, make_generator

MAX_SOURCE_CHARS = 1500  # per source in the prompt, so k sources fit a small model's context
SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources you are given. "
    "After each statement, cite the sources that support it with their numbers in square brackets, "
    "like [1] or [2][3]. If the sources do not contain the answer, say plainly that they do not "
    "contain it, and do not guess. Always answer in the same language as the question."
)
NO_SOURCES_PROMPT = (
    "No sources were found for the question below. Tell the user, in one short sentence and in "
    "the same language as the question, that the collection does not contain the answer."
)


class Passage(Protocol):
    """A retrieved piece of text (e.g. :class:`gemvec.store.Hit`)."""

    text: str
    title: str | None

    def to_dict(self) -> dict[str, Any]: ...


class Retriever(Protocol):
    """What RAG needs from a store: the top ``k`` passages for a query."""

    def search(
        self, query: str, k: int = ..., mode: str = ..., filters: dict[str, Any] | None = ...
    ) -> Sequence[Passage]: ...


_CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


@dataclass
class Source:
    number: int  # the [n] the model cites
    hit: Passage
    cited: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "cited": self.cited, **self.hit.to_dict()}


@dataclass
class Answer:
    question: str
    text: str
    sources: list[Source]
    citations: list[int]  # valid source numbers cited, in order of first citation

    @property
    def grounded(self) -> bool:
        """True when the answer cites at least one of its sources."""
        return bool(self.citations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "citations": self.citations,
            "grounded": self.grounded,
            "sources": [s.to_dict() for s in self.sources],
        }


def build_messages(question: str, hits: list[Passage], max_chars: int = MAX_SOURCE_CHARS) -> list[Message]:
    """The chat prompt: instructions, then the numbered sources, then the question."""
    if not hits:
        return [
            {"role": "system", "content": NO_SOURCES_PROMPT},
            {"role": "user", "content": f"Question: {question}"},
        ]
    blocks = []
    for number, hit in enumerate(hits, start=1):
        text = hit.text if len(hit.text) <= max_chars else hit.text[:max_chars].rsplit(" ", 1)[0] + " …"
        heading = f"[{number}]" + (f" {hit.title}" if hit.title else "")
        blocks.append(f"{heading}\n{text}")
    user = "Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_citations(text: str, n_sources: int) -> list[int]:
    """Source numbers cited as ``[n]``, ``[n, m]`` or ``[n][m]``, valid ones only, first-cited first."""
    found: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        for part in re.split(r"\s*[,;]\s*", match.group(1)):
            number = int(part)
            if 1 <= number <= n_sources:
                found[number] = None
    return list(found)


def _finish(question: str, text: str, hits: list[Passage]) -> Answer:
    citations = parse_citations(text, len(hits))
    sources = [Source(i, hit, i in citations) for i, hit in enumerate(hits, start=1)]
    return Answer(question, text.strip(), sources, citations)


class AnswerStream:
    """Iterate for text pieces; ``sources`` now, ``answer`` after the last piece."""

    def __init__(self, question: str, hits: list[Passage], pieces: Iterator[str]) -> None:
        self.question = question
        self.hits = hits
        self.sources = [Source(i, hit) for i, hit in enumerate(hits, start=1)]
        self._pieces = pieces
        self._text: list[str] = []
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self._text.append(piece)
            yield piece
        self.answer = _finish(self.question, "".join(self._text), self.hits)
        self.sources = self.answer.sources


def ask(
    retriever: Retriever,
    question: str,
    generator: Generator | str | None = None,
    *,
    k: int = 4,
    mode: str = "hybrid",
    filters: dict[str, Any] | None = None,
    stream: bool = False,
    max_tokens: int = 512,
    temperature: float = 0.0,
) -> Answer | AnswerStream:
    """Retrieve ``k`` chunks, ask ``generator`` (a Generator or a spec for make_generator), cite."""
    if not isinstance(question, str) or not question.strip():
        raise InputError("The question is empty.")
    llm = generator if isinstance(generator, Generator) else make_generator(generator)
    hits = list(retriever.search(question, k=k, mode=mode, filters=filters))
    pieces = llm.stream(build_messages(question, hits), max_tokens=max_tokens, temperature=temperature)
    if stream:
        return AnswerStream(question, hits, pieces)
    return _finish(question, "".join(pieces), hits)
