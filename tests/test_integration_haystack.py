"""Haystack: gemvec's embedders in a Pipeline with Haystack's own document store, and gemvec's
retriever over a collection, with the real haystack-ai package."""

from __future__ import annotations

import asyncio
import os

import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
pytest.importorskip("haystack")

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
from haystack.document_stores.in_memory import InMemoryDocumentStore
from test_integration_corpus import (
    DOCUMENTS,
    IDS,
    KEYWORD,
    QUERY,
    TITLES,
    TOPICS,
    assert_same_vectors,
    corpus_collection,
    first_for,
    pick_embedder,
    small_dim,
)

from gemvec.errors import InputError
from gemvec.integrations.haystack import GemvecDocumentEmbedder, GemvecRetriever, GemvecTextEmbedder


@pytest.fixture(scope="module")
def embedder(request):
    return pick_embedder(request)


@pytest.mark.filterwarnings("ignore:dim=")
def test_embedders_in_a_pipeline_with_an_in_memory_store(embedder):
    dim = small_dim(embedder)
    documents = [
        Document(content=t, meta={"title": title}) for t, title in zip(DOCUMENTS, TITLES, strict=True)
    ]
    indexing = Pipeline()
    indexing.add_component("embed", GemvecDocumentEmbedder(embedder, dim=dim))
    embedded = indexing.run({"embed": {"documents": documents}})["embed"]["documents"]
    assert_same_vectors(
        [d.embedding for d in embedded],
        embedder.encode_document(DOCUMENTS, titles=TITLES, dim=dim),
    )
    store = InMemoryDocumentStore()
    store.write_documents(embedded)

    query = Pipeline()
    query.add_component("embed", GemvecTextEmbedder(embedder, dim=dim))
    query.add_component("retrieve", InMemoryEmbeddingRetriever(store, top_k=3))
    query.connect("embed.embedding", "retrieve.query_embedding")
    result = query.run({"embed": {"text": QUERY}}, include_outputs_from={"embed"})
    assert_same_vectors(result["embed"]["embedding"], embedder.encode_query(QUERY, dim=dim))
    assert result["retrieve"]["documents"][0].content == DOCUMENTS[first_for(embedder, dim=dim)]


def test_document_embedder_options(tiny_embedder):
    documents = [
        Document(content=t, meta={"name": n}) for t, n in zip(DOCUMENTS[:2], TITLES[:2], strict=True)
    ]
    named = GemvecDocumentEmbedder(tiny_embedder, title_field="name", batch_size=1).run(documents)
    assert_same_vectors(
        [d.embedding for d in named["documents"]],
        tiny_embedder.encode_document(DOCUMENTS[:2], titles=TITLES[:2]),
    )
    assert named["meta"] == {"model": tiny_embedder.model_name, "dim": tiny_embedder.dim, "task": "document"}
    clustering = asyncio.run(GemvecDocumentEmbedder(tiny_embedder, task="clustering").run_async(documents))
    assert_same_vectors(
        [d.embedding for d in clustering["documents"]],
        tiny_embedder.encode(DOCUMENTS[:2], task="clustering"),
    )
    assert GemvecDocumentEmbedder(tiny_embedder).run([])["documents"] == []
    vector = asyncio.run(GemvecTextEmbedder(tiny_embedder, task="qa").run_async(QUERY))["embedding"]
    assert_same_vectors(vector, tiny_embedder.encode(QUERY, task="question_answering"))
    with pytest.raises(TypeError, match="GemvecTextEmbedder"):
        GemvecDocumentEmbedder(tiny_embedder).run(DOCUMENTS)


def test_a_pipeline_loads_the_model_and_survives_serialization(tiny_model_dir, tiny_embedder):
    pipeline = Pipeline()
    pipeline.add_component("embed", GemvecTextEmbedder(model=str(tiny_model_dir), precision="float32"))
    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["gemvec.integrations.haystack"])
    vector = loaded.run({"embed": {"text": QUERY}})["embed"]["embedding"]
    assert_same_vectors(vector, tiny_embedder.encode_query(QUERY))


def test_retriever_over_a_collection_in_a_pipeline(embedder, tmp_path):
    collection = corpus_collection(tmp_path / "corpus", embedder)
    pipeline = Pipeline()
    pipeline.add_component("retrieve", GemvecRetriever(collection, top_k=2, mode="dense"))
    found = pipeline.run({"retrieve": {"query": QUERY}})["retrieve"]["documents"]
    best = first_for(embedder)
    assert [d.content for d in found][:1] == [DOCUMENTS[best]]
    assert found[0].meta == {
        "source": IDS[best],
        "title": TITLES[best],
        "topic": TOPICS[best],
        "chunk": 0,
        "start": 0,
        "end": len(DOCUMENTS[best]),
        "document_id": found[0].meta["document_id"],
        "chunk_id": found[0].meta["chunk_id"],
    }
    assert found[0].id == f"{IDS[best]}#0" and found[0].score >= found[1].score

    retriever = GemvecRetriever(collection, filters={"topic": ["space", "computing"]})
    assert {d.meta["topic"] for d in retriever.run(QUERY)["documents"]} == {"space", "computing"}
    haystack_filter = {
        "operator": "AND",
        "conditions": [{"field": "meta.topic", "operator": "in", "value": ["earth"]}],
    }
    assert [d.meta["topic"] for d in retriever.run(QUERY, filters=haystack_filter)["documents"]] == ["earth"]
    by_title = {"field": "meta.title", "operator": "==", "value": "Python"}
    assert [d.meta["source"] for d in retriever.run(QUERY, filters=by_title)["documents"]] == ["python"]
    assert [d.meta["source"] for d in retriever.run(KEYWORD, filters={}, mode="keyword")["documents"]] == [
        "photosynthesis"
    ]
    with pytest.raises(InputError, match="'==' or 'in'"):
        retriever.run(QUERY, filters={"operator": "OR", "conditions": [by_title, by_title]})
    with pytest.raises(InputError, match="not '>'"):
        retriever.run(QUERY, filters={"field": "meta.year", "operator": ">", "value": 1900})


def test_retriever_opens_a_collection_by_path(tiny_embedder, tmp_path):
    corpus_collection(tmp_path / "corpus", tiny_embedder).close()
    retriever = GemvecRetriever(tmp_path / "corpus", embedder=tiny_embedder, mode="keyword", top_k=1)
    assert [d.meta["source"] for d in retriever.run(KEYWORD)["documents"]] == ["photosynthesis"]
    with pytest.raises(InputError, match="Unknown search mode"):
        GemvecRetriever(tmp_path / "corpus", embedder=tiny_embedder, mode="semantic")
