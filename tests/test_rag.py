"""RAG: prompt building, citation mapping, streaming, and a real local LLM (SmolLM2 via llama-cpp).

The answer checks (invalid citations, support, language, extractive answers) are in test_rag_grounding.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gemvec.llm import Message
from gemvec.rag import NO_SOURCES_PROMPT, Answer, AnswerStream, build_messages, parse_citations
from gemvec.store import Collection

FACTS = {
    "fleming": "Alexander Fleming discovered penicillin in 1928 in London.",
    "eiffel": "The Eiffel Tower in Paris was completed in 1889.",
    "curie": "Marie Curie won Nobel prizes in physics and in chemistry.",
}


class ScriptedGenerator:
    """A deterministic generator for the plumbing above the model: replays a fixed answer in pieces."""

    name = "scripted"

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.seen: list[list[Message]] = []

    def stream(
        self, messages: list[Message], *, max_tokens: int = 512, temperature: float = 0.0
    ) -> Iterator[str]:
        self.seen.append(messages)
        for word in self.answer.split(" "):
            yield word + " "


@pytest.fixture()
def facts(tmp_path: Path, tiny_embedder) -> Collection:
    coll = Collection.create(tmp_path / "facts", embedder=tiny_embedder)
    coll.add_texts(list(FACTS.values()), ids=list(FACTS), titles=["Penicillin", "Eiffel Tower", "Curie"])
    return coll


def test_citations_parse_and_map_to_sources(facts: Collection) -> None:
    assert parse_citations("A [2]. B [1, 3][2] and [7] and [0].", 3) == [2, 1, 3]
    generator = ScriptedGenerator("Fleming did, in 1928 [1]. Not [9].")
    answer = facts.ask("Who discovered penicillin", generator, k=2, mode="keyword")
    assert isinstance(answer, Answer)
    assert answer.citations == [1] and answer.grounded
    assert answer.sources[0].cited and answer.sources[0].hit.source == "fleming"
    prompt = generator.seen[0][1]["content"]
    assert "[1] Penicillin\nAlexander Fleming" in prompt and prompt.endswith(
        "Question: Who discovered penicillin"
    )
    as_dict = answer.to_dict()
    assert as_dict["answer"].startswith("Fleming") and as_dict["sources"][0]["number"] == 1


def test_streaming_yields_pieces_then_the_answer(facts: Collection) -> None:
    stream = facts.ask(
        "Eiffel Tower", ScriptedGenerator("Built in 1889 [1]."), k=1, mode="keyword", stream=True
    )
    assert isinstance(stream, AnswerStream)
    assert stream.sources[0].hit.source == "eiffel" and stream.answer is None
    pieces = list(stream)
    assert len(pieces) > 1 and stream.answer is not None
    assert stream.answer.text == "".join(pieces).strip() and stream.answer.citations == [1]


def test_no_sources_asks_the_model_to_say_so(tmp_path: Path, tiny_embedder) -> None:
    empty = Collection.create(tmp_path / "empty", embedder=tiny_embedder)
    generator = ScriptedGenerator("The collection does not contain the answer.")
    answer = empty.ask("Quelle est la capitale ?", generator)
    assert answer.sources == [] and not answer.grounded
    assert generator.seen[0][0]["content"] == NO_SOURCES_PROMPT
    assert build_messages("q", [])[1]["content"] == "Question: q"


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (the llm extra) is not installed")
    from gemvec.llm import make_generator
    from gemvec.llm.models import find_smollm2_gguf

    try:
        find_smollm2_gguf()
    except Exception as exc:
        pytest.skip(f"SmolLM2 GGUF not available: {exc}")
    return make_generator("smollm2")


@pytest.mark.slow
def test_ask_with_a_real_local_llm(facts: Collection, smollm2) -> None:
    answer = facts.ask("Who discovered penicillin?", smollm2, k=2, mode="hybrid", max_tokens=32)
    assert answer.text.strip()
    assert [s.number for s in answer.sources] == [1, 2]
    assert answer.sources[0].hit.source == "fleming"
    assert set(answer.citations) <= {1, 2}
    stream = facts.ask("Who discovered penicillin?", smollm2, k=2, mode="hybrid", max_tokens=32, stream=True)
    pieces = list(stream)
    assert stream.answer is not None and stream.answer.to_dict() == answer.to_dict()
    # the pieces are the LLM's; an ungrounded answer of it is replaced by an extract of the sources
    assert "".join(pieces).strip() == (answer.generated_text if answer.mode == "extractive" else answer.text)
