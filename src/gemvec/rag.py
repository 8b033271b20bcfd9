"""RAG: retrieve passages, number them in a prompt, generate, check the answer against its sources.

    answer = ask(retriever, "Who discovered penicillin?", make_generator("smollm2"))
    answer.text, answer.citations, answer.mode, answer.sources[0].hit.path

The retriever is anything with a ``search(query, k=, mode=, filters=)`` returning passages
(a :class:`gemvec.store.Collection` is one; ``coll.ask(...)`` calls this module).

Every answer is checked before it is returned:

* **Citations**: ``[n]`` markers for sources that were not retrieved are removed from the text
  (also while streaming) and listed in ``Answer.invalid_citations``.
* **Support**: each sentence's content words (function words of all languages left out) are
  looked up in the sources it cites (its own ``[n]``, else all the answer cites) and in the
  question; ``Answer.support`` is the share found for the weakest sentence of at least
  ``MIN_SENTENCE_TERMS`` content words. The answer is grounded when it cites a source and
  ``support >= SUPPORT_THRESHOLD``.
* **Language**: the question's and the answer's languages (:mod:`gemvec.lang`) are reported,
  and ``language_ok`` says whether they match (None when one cannot be told). The prompt names
  the question's language.

``answer_mode`` picks what is returned: ``"generated"`` (the LLM's answer, checked), ``"extractive"``
(no LLM: the retrieved sentences most similar to the question, cited, in the sources' language)
or ``"auto"`` (the default: the LLM's answer when it is grounded, else the extractive one, with
the LLM's text kept in ``Answer.generated_text``). Sentences are ranked by a :class:`SentenceRanker`;
by default the retriever's own ``embedder`` (query vs. document embeddings), else word overlap.

With ``stream=True`` an :class:`AnswerStream` is returned instead: iterate it for text pieces
as they are generated; its ``sources`` are known before the first piece and its ``answer``
(an :class:`Answer`) once the iteration ends. In ``auto`` mode the pieces are the LLM's; when
that answer turns out ungrounded, ``answer.mode`` is ``"extractive"`` and ``answer.text``
differs from the pieces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gemvec.errors import InputError
from gemvec.lang import detect_language, function_words, language_name
from gemvec.llm import Generator, Message, make_generator
from gemvec.tasks.keywords import terms

AnswerMode = Literal["auto", "generated", "extractive"]
ANSWER_MODES = ("auto", "generated", "extractive")
MAX_SOURCE_CHARS = 1500  # per source in the prompt, so k sources fit a small model's context
SUPPORT_THRESHOLD = 0.5  # share of a sentence's content words that its sources must contain
MIN_SENTENCE_TERMS = 3  # sentences with fewer content words ("I hope this helps.") are not judged
EXTRACTIVE_SENTENCES = 2  # sentences in an extractive answer
MAX_SENTENCE_CHARS = 400
STEM_CHARS = 5  # content words are compared by their first letters: "embeds" ~ "embed"
SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources you are given. "
    "After each statement, cite the sources that support it with their numbers in square brackets, "
    "like [1] or [2][3]. If the sources do not contain the answer, say plainly that they do not "
    "contain it, and do not guess. Always answer in the same language as the question."
)
_SAME_LANGUAGE = "Always answer in the same language as the question."
NO_SOURCES_PROMPT = (
    "No sources were found for the question below. Tell the user, in one short sentence and in "
    "the same language as the question, that the collection does not contain the answer."
)
NO_SOURCES_TEXT = "No passage of the collection matches the question."


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


class SentenceRanker(Protocol):
    """Scores candidate sentences for a question, higher is better (for extractive answers)."""

    def __call__(self, question: str, sentences: Sequence[str]) -> Sequence[float]: ...


_CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_MARKER = re.compile(r"[ \t]*" + _CITATION.pattern)  # a marker and the blanks before it
_OPEN_TAIL = re.compile(r"[ \t]*(?:\[[\d\s,;]*)?\Z")  # what a later piece could still make a marker
_NUMBERS = re.compile(r"\d+")
_SENTENCE_END = re.compile(r"(?<=[.!?؟।])\s+|(?<=[。！？])")
# A period after an initial ("John C. Messenger"), a day or ordinal ("am 7. Januar") or a Roman
# numeral ("Heinrich III.") does not end a sentence.
_NOT_AN_END = re.compile(r"(?:^|\s)(?:[A-Z]|\d{1,2}|[IVX]{1,4})\.\Z")
_MARKDOWN_LEAD = re.compile(r"^\s*(?:[-*+>]|\d+[.)])\s+")


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
    mode: str = "generated"  # "generated" (the LLM's) or "extractive" (sentences of the sources)
    invalid_citations: list[int] = field(default_factory=list)  # removed [n] with no source n
    support: float = 0.0  # see the module docstring; 1.0 for extractive answers
    question_language: str | None = None  # ISO 639-1, None when it cannot be told
    answer_language: str | None = None
    generated_text: str | None = None  # the LLM's answer when an extractive one replaced it

    @property
    def grounded(self) -> bool:
        """True when the answer cites a source and its content is found in what it cites."""
        return bool(self.citations) and self.support >= SUPPORT_THRESHOLD

    @property
    def language_ok(self) -> bool | None:
        """Whether the answer is in the question's language; None when either is unknown."""
        if self.question_language is None or self.answer_language is None:
            return None
        return self.question_language == self.answer_language

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "mode": self.mode,
            "citations": self.citations,
            "invalid_citations": self.invalid_citations,
            "grounded": self.grounded,
            "support": round(self.support, 3),
            "question_language": self.question_language,
            "answer_language": self.answer_language,
            "language_ok": self.language_ok,
            "generated_answer": self.generated_text,
            "sources": [s.to_dict() for s in self.sources],
        }


def build_messages(question: str, hits: list[Passage], max_chars: int = MAX_SOURCE_CHARS) -> list[Message]:
    """The chat prompt: instructions (naming the question's language), the numbered sources, the question."""
    language = language_name(detect_language(question))
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
    system = SYSTEM_PROMPT
    if language:
        system = system.replace(_SAME_LANGUAGE, f"Always answer in {language}, the language of the question.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_citations(text: str, n_sources: int) -> list[int]:
    """Source numbers cited as ``[n]``, ``[n, m]`` or ``[n][m]``, valid ones only, first-cited first."""
    found: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        for number in _numbers(match.group(1)):
            if 1 <= number <= n_sources:
                found[number] = None
    return list(found)


def _numbers(inside: str) -> list[int]:
    return [int(part) for part in re.split(r"\s*[,;]\s*", inside)]


class CitationFilter:
    """Removes ``[n]`` markers with no source ``n`` from text arriving in pieces.

    A piece's tail that a later piece could turn into a marker (``" [1"``) is held back until
    it is settled, so the pieces it returns join to exactly what :meth:`clean` gives for the
    whole text at once. Removed numbers collect in ``invalid``.
    """

    def __init__(self, n_sources: int) -> None:
        self.n_sources = n_sources
        self.invalid: list[int] = []
        self._pending = ""

    def feed(self, piece: str) -> str:
        self._pending += piece
        tail = _OPEN_TAIL.search(self._pending)
        cut = tail.start() if tail else len(self._pending)
        settled, self._pending = self._pending[:cut], self._pending[cut:]
        return self.clean(settled)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return self.clean(rest)

    def clean(self, text: str) -> str:
        return _MARKER.sub(self._keep_valid, text)

    def _keep_valid(self, match: re.Match[str]) -> str:
        numbers = _numbers(match.group(1))
        valid = [n for n in numbers if 1 <= n <= self.n_sources]
        for number in numbers:
            if number not in valid and number not in self.invalid:
                self.invalid.append(number)
        if len(valid) == len(numbers):
            return match.group(0)
        if not valid:
            return ""
        return match.group(0)[: match.start(1) - match.start(0)] + ", ".join(map(str, valid)) + "]"


def filter_citations(pieces: Iterable[str], citations: CitationFilter) -> Iterator[str]:
    """``pieces`` with invalid markers removed (empty pieces skipped)."""
    for piece in pieces:
        if out := citations.feed(piece):
            yield out
    if out := citations.flush():
        yield out


# -- support and sentences -------------------------------------------------------------------


def content_terms(text: str) -> set[str]:
    """Content words (script-aware, function words dropped, cut to ``STEM_CHARS``) and numbers."""
    words = terms(_CITATION.sub(" ", text), function_words())
    return {w[:STEM_CHARS] for w in words} | set(_NUMBERS.findall(_CITATION.sub(" ", text)))


def split_sentences(text: str, prose_only: bool = False) -> list[str]:
    """The sentences of ``text``, markdown-aware: soft-wrapped lines are joined; a blank line or a
    list item starts a new sentence; headings, table rows and code lines are sentences of their
    own (``#``/``-`` dropped). With ``prose_only``, fenced code and table rows are left out (for
    extractive answers)."""
    blocks: list[list[str]] = [[]]
    in_code = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_code = not in_code
            blocks.append([])
        elif in_code or stripped.startswith("|"):
            if not prose_only:
                blocks += [[stripped], []]
        elif stripped.startswith("#"):
            blocks += [[stripped.lstrip("#").strip()], []]
        elif not stripped or _MARKDOWN_LEAD.match(line):
            blocks.append([_MARKDOWN_LEAD.sub("", line).strip()])
        else:
            blocks[-1].append(stripped)
    out = []
    for block in blocks:
        out.extend(_sentences(" ".join(filter(None, block))))
    return out


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for end in _SENTENCE_END.finditer(text):
        if not _NOT_AN_END.search(text, start, end.start()):
            if sentence := text[start : end.start()].strip():
                yield sentence
            start = end.end()
    if sentence := text[start:].strip():
        yield sentence


def support(answer: str, sources: Sequence[str], question: str = "") -> float:
    """How much of ``answer`` its sources contain: see the module docstring.

    ``sources`` are the texts of sources 1..n; a sentence with ``[n]`` markers is looked up in
    those, one without in every source the answer cites. 0.0 for an answer with no content word.
    """
    asked = content_terms(question)
    cited_anywhere = parse_citations(answer, len(sources))
    source_terms = {n: content_terms(sources[n - 1]) for n in cited_anywhere}
    judged: list[float] = []
    found_total = all_total = 0
    for sentence in split_sentences(answer):
        own = parse_citations(sentence, len(sources)) or cited_anywhere
        known = asked.union(*(source_terms[n] for n in own))
        words = content_terms(sentence)
        found = len(words & known)
        found_total, all_total = found_total + found, all_total + len(words)
        if len(words) >= MIN_SENTENCE_TERMS:
            judged.append(found / len(words))
    if judged:
        return min(judged)
    return found_total / all_total if all_total else 0.0


# -- extractive answers ----------------------------------------------------------------------


class EmbedderRanker:
    """Cosine of the question's query embedding with each sentence's document embedding."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder  # a gemvec.Embedder, or anything with encode_query/encode_document

    def __call__(self, question: str, sentences: Sequence[str]) -> Sequence[float]:
        query = self.embedder.encode_query([question], show_progress=False)[0]
        vectors = self.embedder.encode_document(list(sentences), show_progress=False)
        return (vectors @ query).tolist()


def overlap_ranker(question: str, sentences: Sequence[str]) -> Sequence[float]:
    """Share of the question's content words each sentence contains (when there is no embedder)."""
    asked = content_terms(question)
    return [len(asked & content_terms(s)) / max(len(asked), 1) for s in sentences]


def ranker_for(retriever: Any) -> SentenceRanker:
    """The retriever's ``embedder`` as a ranker (a Collection has one), else word overlap."""
    embedder = getattr(retriever, "embedder", None)
    if callable(getattr(embedder, "encode_query", None)):
        return EmbedderRanker(embedder)
    return overlap_ranker


def extract(question: str, hits: Sequence[Passage], ranker: SentenceRanker) -> str:
    """The ``EXTRACTIVE_SENTENCES`` retrieved sentences ``ranker`` scores best, each with its ``[n]``."""
    candidates: dict[str, int] = {}
    for number, hit in enumerate(hits, start=1):
        for sentence in split_sentences(hit.text, prose_only=True):
            if len(content_terms(sentence)) >= MIN_SENTENCE_TERMS:
                candidates.setdefault(_shorten(sentence), number)
    if not candidates:  # passages of a word or two: quote them whole
        candidates = {
            _shorten(hit.text.strip()): n for n, hit in enumerate(hits, start=1) if hit.text.strip()
        }
    if not candidates:
        return NO_SOURCES_TEXT
    sentences = list(candidates)
    scores = ranker(question, sentences)
    best = sorted(range(len(sentences)), key=lambda i: -scores[i])[:EXTRACTIVE_SENTENCES]
    return " ".join(_cite(sentences[i], candidates[sentences[i]]) for i in best)


def _cite(sentence: str, number: int) -> str:
    """``sentence`` with ``[number]`` before its final punctuation, if any."""
    if sentence[-1] in ".!?;:。！？…؟।":
        return f"{sentence[:-1]} [{number}]{sentence[-1]}"
    return f"{sentence} [{number}]"


def _shorten(sentence: str) -> str:
    if len(sentence) <= MAX_SENTENCE_CHARS:
        return sentence
    return sentence[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …"


# -- answering -------------------------------------------------------------------------------


@dataclass
class _Checker:
    """Turns a finished text into an :class:`Answer`, replacing it with an extract when asked to."""

    question: str
    hits: list[Passage]
    answer_mode: str
    ranker: Callable[[], SentenceRanker]  # made only when an extract is needed

    def answer(self, text: str, mode: str, invalid: list[int]) -> Answer:
        texts = [hit.text for hit in self.hits]
        citations = parse_citations(text, len(self.hits))
        answer = Answer(
            self.question,
            text.strip(),
            [Source(i, hit, i in citations) for i, hit in enumerate(self.hits, start=1)],
            citations,
            mode=mode,
            invalid_citations=invalid,
            support=1.0 if mode == "extractive" else support(text, texts, self.question),
            question_language=detect_language(self.question),
            answer_language=detect_language(_CITATION.sub(" ", text)),
        )
        if mode == "generated" and self.answer_mode == "auto" and self.hits and not answer.grounded:
            fallback = self.extract()
            fallback.generated_text, fallback.invalid_citations = answer.text, invalid
            return fallback
        return answer

    def extract(self) -> Answer:
        return self.answer(extract(self.question, self.hits, self.ranker()), "extractive", [])


class AnswerStream:
    """Iterate for text pieces; ``sources`` now, ``answer`` after the last piece."""

    def __init__(
        self, checker: _Checker, pieces: Iterator[str], citations: CitationFilter | None = None
    ) -> None:
        self.question = checker.question
        self.hits = checker.hits
        self.sources = [Source(i, hit) for i, hit in enumerate(self.hits, start=1)]
        self._checker = checker
        self._pieces = pieces
        self._citations = citations
        self._text: list[str] = []
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self._text.append(piece)
            yield piece
        if self._citations is None:  # the extractive answer, already made
            self.answer = self._checker.answer("".join(self._text), "extractive", [])
        else:
            self.answer = self._checker.answer("".join(self._text), "generated", self._citations.invalid)
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
    answer_mode: AnswerMode = "auto",
    ranker: SentenceRanker | None = None,
) -> Answer | AnswerStream:
    """Retrieve ``k`` chunks and answer (see the module docstring for ``answer_mode``).

    ``generator`` is a Generator or a spec for make_generator (unused in extractive mode);
    ``ranker`` scores sentences for extractive answers (default: :func:`ranker_for` the retriever).
    """
    if not isinstance(question, str) or not question.strip():
        raise InputError("The question is empty.")
    if answer_mode not in ANSWER_MODES:
        raise InputError(f"answer_mode must be one of {', '.join(ANSWER_MODES)}, got {answer_mode!r}.")
    llm = None
    if answer_mode != "extractive":
        llm = generator if isinstance(generator, Generator) else make_generator(generator)
    hits = list(retriever.search(question, k=k, mode=mode, filters=filters))
    checker = _Checker(question, hits, answer_mode, lambda: ranker or ranker_for(retriever))
    if llm is None:
        extracted = checker.extract()
        return AnswerStream(checker, iter([extracted.text])) if stream else extracted
    citations = CitationFilter(len(hits))
    raw = llm.stream(build_messages(question, hits), max_tokens=max_tokens, temperature=temperature)
    pieces = filter_citations(raw, citations)
    if stream:
        return AnswerStream(checker, pieces, citations)
    return checker.answer("".join(pieces), "generated", citations.invalid)
