"""/v1/search and /v1/ask over a real collection (tiny model, real SQLite + FAISS) with a scripted LLM."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from gemvec.server import create_app  # noqa: E402
from gemvec.server.background import BackgroundServer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:dim=64")  # the tiny model's size is not a trained one

DOCS = {
    "fox": ("Foxes", "The quick brown fox jumps over the lazy dog.", {"lang": "en"}),
    "fuchs": ("Fuchs", "Der schnelle braune Fuchs springt über den faulen Hund.", {"lang": "de"}),
    "cat": ("Cats", "Cats sleep most of the day and hunt at night.", {"lang": "en"}),
}


class ScriptedLLM:
    """A deterministic Generator: cites source [1] by quoting its first words, piece by piece."""

    name = "scripted"

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.calls: list[list[dict]] = []

    def stream(self, messages, *, max_tokens: int = 512, temperature: float = 0.0) -> Iterator[str]:
        self.calls.append(messages)
        user = messages[-1]["content"]
        first = user.split("[1]", 1)[1].splitlines()[1] if "[1]" in user else "nothing found"
        for i, piece in enumerate(["According to ", "[1], ", *first.split(" ")[:4]]):
            if self.fail_after is not None and i >= self.fail_after:
                raise RuntimeError("the LLM went away")
            yield piece + ("" if piece.endswith(" ") else " ")


@pytest.fixture(scope="module")
def collection(tiny_embedder, tmp_path_factory):
    from gemvec.store import Collection

    coll = Collection.create(tmp_path_factory.mktemp("collections") / "docs", embedder=tiny_embedder)
    ids = list(DOCS)
    coll.add_texts(
        [DOCS[i][1] for i in ids],
        ids=ids,
        titles=[DOCS[i][0] for i in ids],
        metadata=[DOCS[i][2] for i in ids],
    )
    return coll


@pytest.fixture(scope="module")
def llm():
    return ScriptedLLM()


@pytest.fixture(scope="module")
def server(tiny_embedder, collection, llm):
    with BackgroundServer(create_app(tiny_embedder, collection=collection, generator=llm)) as running:
        yield running


def post(server, path: str, body) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def test_search_matches_the_collection(server, collection):
    for mode in ("hybrid", "dense", "keyword"):
        body = post(server, "/v1/search", {"query": "brown fox", "k": 2, "mode": mode}).json()
        direct = collection.search("brown fox", k=2, mode=mode)
        assert body["collection"] == collection.name and body["query"] == "brown fox"
        assert [h["source"] for h in body["data"]] == [h.source for h in direct]
        assert [h["score"] for h in body["data"]] == pytest.approx([h.score for h in direct])
    hit = post(server, "/v1/search", {"query": "fox", "mode": "keyword"}).json()["data"][0]
    assert hit["source"] == "fox" and hit["title"] == "Foxes" and "lazy dog" in hit["text"]
    assert hit["metadata"] == {"lang": "en"}


def test_search_filters(server):
    body = post(server, "/v1/search", {"query": "fox Fuchs", "k": 5, "filters": {"lang": "de"}}).json()
    assert [h["source"] for h in body["data"]] == ["fuchs"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": ""}, "query"),
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x", "k": 1000}, "k"),
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"query": "x", "filters": "lang=en"}, "filters"),
        ({"query": "x", "colour": "red"}, "colour"),
        ({"query": 7}, "query"),
        ({}, "query"),
    ],
)
def test_search_bad_requests(server, body, param):
    response = post(server, "/v1/search", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_hostile_filters_are_400_not_500(server):
    """#21.5: a filter value past 64-bit integers, and ~300k filter values, answered 500."""
    huge = post(server, "/v1/search", {"query": "fox", "filters": {"n": 2**63}})
    assert huge.status_code == 400 and "64-bit" in huge.json()["error"]["message"]
    many = post(server, "/v1/search", {"query": "fox", "filters": {"n": list(range(300_000))}})
    assert many.status_code == 400 and "limit" in many.json()["error"]["message"]
    fine = post(
        server,
        "/v1/search",
        {"query": "fox", "mode": "keyword", "filters": {"lang": ["x", *"abc"], "n": [1]}},
    )
    assert fine.status_code == 200


def test_search_bad_filter_key_is_400(server):
    response = post(server, "/v1/search", {"query": "x", "filters": {"bad key;": "1"}})
    assert response.status_code == 400
    assert "filter key" in response.json()["error"]["message"].lower()


def test_ask_answers_with_sources(server):
    body = post(server, "/v1/ask", {"question": "What does the fox do?", "k": 2}).json()
    assert body["object"] == "answer" and body["question"] == "What does the fox do?"
    assert body["answer"].startswith("According to [1],")
    assert body["citations"] == [1] and body["grounded"] is True
    assert [s["number"] for s in body["sources"]] == [1, 2]
    assert body["sources"][0]["cited"] is True and body["sources"][0]["text"]


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_ask_streams_server_sent_events(server):
    with httpx.stream(
        "POST", server.url + "/v1/ask", json={"question": "fox?", "stream": True, "k": 2}, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.read().decode())
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "answer"
    assert set(names[1:-1]) == {"delta"} and len(names) > 3
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    final = events[-1][1]
    assert final["answer"] == streamed.strip()
    assert len(events[0][1]["sources"]) == len(final["sources"]) == 2
    assert final["citations"] == [1]


def test_ask_errors_mid_stream_are_reported_in_band(tiny_embedder, collection):
    app = create_app(tiny_embedder, collection=collection, generator=ScriptedLLM(fail_after=2))
    with BackgroundServer(app) as running:
        response = post(running, "/v1/ask", {"question": "fox?", "stream": True})
        events = parse_sse(response.text)
        assert events[-1][0] == "error" and "went away" in events[-1][1]["message"]
        plain = post(running, "/v1/ask", {"question": "fox?"})
        assert plain.status_code == 502 and "went away" in plain.json()["error"]["message"]
        assert post(running, "/v1/search", {"query": "fox"}).status_code == 200


def test_ask_without_a_usable_llm_is_503(tiny_embedder, collection):
    app = create_app(tiny_embedder, collection=collection, generator="no-such-llm-spec")
    with BackgroundServer(app) as running:
        response = post(running, "/v1/ask", {"question": "fox?"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "llm_unavailable"


def test_without_a_collection_search_and_ask_are_503(tiny_embedder):
    with BackgroundServer(create_app(tiny_embedder)) as running:
        for path, body in (("/v1/search", {"query": "x"}), ("/v1/ask", {"question": "x"})):
            response = post(running, path, body)
            assert response.status_code == 503
            assert "no collection configured" in response.json()["error"]["message"].lower()


def test_ask_extractive_answers_from_the_sources_alone(server):
    body = post(server, "/v1/ask", {"question": "brown fox", "k": 2, "answer_mode": "extractive"}).json()
    assert body["mode"] == "extractive" and body["citations"] and body["invalid_citations"] == []
    assert post(server, "/v1/ask", {"question": "x", "answer_mode": "poem"}).status_code == 400
