"""Chroma: gemvec's embedding function on a PersistentClient collection (add, query, reopen),
with the real chromadb package."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("chromadb")

import chromadb
from chromadb.config import Settings
from test_integration_corpus import (
    DOCUMENTS,
    IDS,
    QUERY,
    TOPICS,
    assert_same_vectors,
    first_for,
    pick_embedder,
    small_dim,
)

from gemvec.integrations.chroma import GemvecEmbeddingFunction

OFFLINE = Settings(anonymized_telemetry=False)


@pytest.fixture(scope="module")
def embedder(request):
    return pick_embedder(request)


def corpus(client, function: GemvecEmbeddingFunction):
    collection = client.create_collection("corpus", embedding_function=function)
    collection.add(ids=IDS, documents=DOCUMENTS, metadatas=[{"topic": t} for t in TOPICS])
    return collection


@pytest.mark.filterwarnings("ignore:dim=")
def test_add_and_query_a_persistent_collection(embedder, tmp_path):
    dim = small_dim(embedder)
    function = GemvecEmbeddingFunction(embedder, dim=dim)
    collection = corpus(chromadb.PersistentClient(str(tmp_path), settings=OFFLINE), function)
    stored = collection.get(ids=IDS, include=["embeddings"])["embeddings"]
    assert_same_vectors(stored, embedder.encode_document(DOCUMENTS, dim=dim))
    assert_same_vectors(function.embed_query([QUERY]), embedder.encode_query([QUERY], dim=dim))

    found = collection.query(query_texts=[QUERY], n_results=3)
    best = first_for(embedder, titles=None, dim=dim)
    assert found["ids"][0][0] == IDS[best]
    cosine = embedder.encode_document(DOCUMENTS[best], dim=dim) @ embedder.encode_query(QUERY, dim=dim)
    assert found["distances"][0][0] == pytest.approx(1 - cosine, abs=1e-4)  # the cosine space
    narrowed = collection.query(
        query_texts=[QUERY], n_results=3, where={"topic": {"$in": ["space", "earth"]}}
    )
    assert sorted(narrowed["ids"][0]) == ["mars", "pacific"]


def test_a_reopened_collection_rebuilds_the_function(tiny_embedder, tiny_model_dir, tmp_path):
    function = GemvecEmbeddingFunction(model=tiny_model_dir, precision="float32", query_task="qa")
    corpus(chromadb.PersistentClient(str(tmp_path), settings=OFFLINE), function)
    assert function.get_config() == {
        "model": str(tiny_model_dir),
        "precision": "float32",
        "dim": None,
        "query_task": "question_answering",
        "document_task": "document",
        "batch_size": 32,
    }
    reopened = chromadb.PersistentClient(str(tmp_path), settings=OFFLINE).get_collection("corpus")
    found = reopened.query(query_texts=[QUERY], n_results=5, include=["distances"])
    documents = tiny_embedder.encode_document(DOCUMENTS)
    cosines = documents @ tiny_embedder.encode(QUERY, task="question_answering")
    assert found["ids"][0] == [IDS[i] for i in np.argsort(-cosines)]
