"""The corpus the framework tests (tests/test_integration_*.py) index and query, and its oracle.

With the real checkpoint (EMBEDDINGGEMMA_DIR) QUERY has one right answer among DOCUMENTS; with
the tiny random one, the document a framework must rank first is the one gemvec's own Embedder
ranks first. Either way each framework is checked against what :class:`gemvec.Embedder` gives.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_MODEL_ENV

from gemvec import Embedder
from gemvec.store import Collection

DOCUMENTS = [
    "Mars, known for its reddish dust, is often called the Red Planet.",
    "The Pacific is the largest and deepest of the world's oceans.",
    "Plants turn sunlight, water and carbon dioxide into sugar and oxygen by photosynthesis.",
    "The Eiffel Tower was built in Paris for the 1889 World's Fair.",
    "Python is a programming language known for its readable syntax.",
]
TITLES = ["Mars", "Pacific Ocean", "Photosynthesis", "Eiffel Tower", "Python"]
TOPICS = ["space", "earth", "science", "history", "computing"]
IDS = ["mars", "pacific", "photosynthesis", "eiffel", "python"]
QUERY = "Which French landmark was put up for an international exhibition?"
ANSWER = 3  # the Eiffel Tower
KEYWORD = "photosynthesis"  # a word only DOCUMENTS[2] holds: keyword search finds it with any model
MIN_COSINE = 0.9999


def pick_embedder(request: pytest.FixtureRequest) -> Embedder:
    """The real model where EMBEDDINGGEMMA_DIR is set, else the tiny random one."""
    return request.getfixturevalue("real_embedder" if os.environ.get(REAL_MODEL_ENV) else "tiny_embedder")


def is_real(embedder: Embedder) -> bool:
    folder = os.environ.get(REAL_MODEL_ENV)
    return (
        bool(folder) and embedder.folder is not None and embedder.folder.resolve() == Path(folder).resolve()
    )


def small_dim(embedder: Embedder) -> int:
    """A Matryoshka size below the model's: 256 for the real one, 32 (with a warning) for the tiny one."""
    return 256 if embedder.dim > 256 else embedder.dim // 2


def first_for(embedder: Embedder, *, titles: list[str | None] | None = TITLES, dim: int | None = None) -> int:
    """The document gemvec's Embedder ranks first for QUERY (the answer, with the real model)."""
    documents = embedder.encode_document(DOCUMENTS, titles=titles, dim=dim)
    best = int(np.argmax(documents @ embedder.encode_query(QUERY, dim=dim)))
    if is_real(embedder):
        assert best == ANSWER, f"the real model ranks {IDS[best]!r} first for {QUERY!r}"
    return best


def assert_same_vectors(got, expected: np.ndarray) -> None:
    """Each row of ``got`` points where the Embedder's row does (cosine >= MIN_COSINE)."""
    got = np.atleast_2d(np.asarray(got, np.float32))
    expected = np.atleast_2d(expected)
    assert got.shape == expected.shape
    cosines = np.sum(got * expected, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosines.min() >= MIN_COSINE, cosines


def corpus_collection(folder: Path, embedder: Embedder, dim: int | None = None) -> Collection:
    """A new collection holding DOCUMENTS (ids IDS, titles TITLES, metadata ``{"topic": ...}``)."""
    collection = Collection.create(folder, embedder=embedder, dim=dim)
    metadata = [{"topic": topic} for topic in TOPICS]
    collection.add_texts(DOCUMENTS, ids=IDS, titles=TITLES, metadata=metadata)
    return collection


@pytest.mark.real_model
def test_the_real_model_answers_the_query_unambiguously(real_embedder):
    documents = real_embedder.encode_document(DOCUMENTS, titles=TITLES)
    cosines = documents @ real_embedder.encode_query(QUERY)
    assert int(np.argmax(cosines)) == ANSWER
    assert cosines[ANSWER] - np.delete(cosines, ANSWER).max() > 0.05, cosines
    untitled = real_embedder.encode_document(DOCUMENTS) @ real_embedder.encode_query(QUERY)
    assert int(np.argmax(untitled)) == ANSWER  # frameworks that carry no titles find it too


def test_a_corpus_collection_ranks_as_the_embedder(tiny_embedder, tmp_path):
    with corpus_collection(tmp_path / "corpus", tiny_embedder) as collection:
        hits = collection.search(QUERY, k=len(DOCUMENTS), mode="dense")
        assert hits[0].source == IDS[first_for(tiny_embedder)]
        assert {h.source for h in collection.search(KEYWORD, k=3, mode="keyword")} == {IDS[2]}
