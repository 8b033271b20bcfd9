"""LlamaIndex: gemvec's embedding model in a VectorStoreIndex, and gemvec's retriever over a
collection, with the real llama-index-core package."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import VectorStoreIndex
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from test_integration_corpus import (
    DOCUMENTS,
    IDS,
    KEYWORD,
    QUERY,
    TITLES,
    assert_same_vectors,
    corpus_collection,
    first_for,
    pick_embedder,
    small_dim,
)

from gemvec.errors import InputError
from gemvec.integrations.llamaindex import GemvecEmbedding, GemvecRetriever


@pytest.fixture(scope="module")
def embedder(request):
    return pick_embedder(request)


@pytest.mark.filterwarnings("ignore:dim=")
def test_embedding_model_in_a_vector_store_index(embedder):
    dim = small_dim(embedder)
    model = GemvecEmbedding(embedder, dim=dim)
    nodes = [TextNode(id_=i, text=t) for i, t in zip(IDS, DOCUMENTS, strict=True)]
    index = VectorStoreIndex(nodes, embed_model=model)
    stored = [index.vector_store.get(i) for i in IDS]
    assert_same_vectors(stored, embedder.encode_document(DOCUMENTS, dim=dim))
    assert_same_vectors(model.get_query_embedding(QUERY), embedder.encode_query(QUERY, dim=dim))

    best = IDS[first_for(embedder, titles=None, dim=dim)]
    assert index.as_retriever(similarity_top_k=2).retrieve(QUERY)[0].node.id_ == best
    found = asyncio.run(index.as_retriever(similarity_top_k=2).aretrieve(QUERY))
    assert found[0].node.id_ == best


def test_embedding_model_tasks(tiny_embedder, tiny_model_dir):
    model = GemvecEmbedding(
        model=tiny_model_dir, precision="float32", query_task="qa", text_task="clustering"
    )
    assert (model.query_task, model.text_task, model.model_name) == (
        "question_answering",
        "clustering",
        str(tiny_model_dir),
    )
    assert_same_vectors(model.get_query_embedding(QUERY), tiny_embedder.encode(QUERY, task="qa"))
    texts = model.get_text_embedding_batch(DOCUMENTS)
    assert_same_vectors(texts, tiny_embedder.encode(DOCUMENTS, task="clustering"))
    asynchronous = asyncio.run(model.aget_text_embedding(DOCUMENTS[0]))
    assert_same_vectors(asynchronous, tiny_embedder.encode(DOCUMENTS[0], task="clustering"))


def test_retriever_over_a_collection(embedder, tmp_path):
    collection = corpus_collection(tmp_path / "corpus", embedder)
    best = first_for(embedder)
    found = GemvecRetriever(collection, similarity_top_k=3, mode="dense").retrieve(QUERY)
    assert found[0].node.text == DOCUMENTS[best] and found[0].node.id_ == f"{IDS[best]}#0"
    assert found[0].node.metadata["title"] == TITLES[best] and found[0].score >= found[1].score
    asynchronous = asyncio.run(GemvecRetriever(collection, mode="dense").aretrieve(QUERY))
    assert [n.node.id_ for n in asynchronous][:3] == [n.node.id_ for n in found]

    in_filter = MetadataFilters(
        filters=[MetadataFilter(key="topic", value=["space", "earth"], operator="in")]
    )
    topics = {
        n.node.metadata["topic"] for n in GemvecRetriever(collection, filters=in_filter).retrieve(QUERY)
    }
    assert topics == {"space", "earth"}
    by_title = MetadataFilters(filters=[MetadataFilter(key="title", value="Python")])
    assert [
        n.node.metadata["source"] for n in GemvecRetriever(collection, filters=by_title).retrieve(QUERY)
    ] == ["python"]
    keyword = GemvecRetriever(collection, mode="keyword", filters={"topic": "science"})
    assert [n.node.metadata["source"] for n in keyword.retrieve(KEYWORD)] == ["photosynthesis"]

    with pytest.raises(InputError, match="not '>'"):
        GemvecRetriever(
            collection,
            filters=MetadataFilters(
                filters=[MetadataFilter(key="year", value=1900, operator=FilterOperator.GT)]
            ),
        )
    with pytest.raises(InputError, match="AND"):
        GemvecRetriever(
            collection, filters=MetadataFilters(filters=[by_title.filters[0]], condition=FilterCondition.OR)
        )
