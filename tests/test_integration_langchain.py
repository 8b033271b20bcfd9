"""LangChain: a gemvec collection as a VectorStore and retriever, with the real langchain-core package."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document
from test_integration_corpus import (
    DOCUMENTS,
    IDS,
    KEYWORD,
    QUERY,
    TITLES,
    TOPICS,
    assert_same_vectors,
    first_for,
    pick_embedder,
    small_dim,
)

from gemvec.errors import InputError
from gemvec.integrations.langchain import GemvecEmbeddings
from gemvec.integrations.langchain_store import GemvecVectorStore


@pytest.fixture(scope="module")
def embedder(request):
    return pick_embedder(request)


@pytest.mark.filterwarnings("ignore:dim=")
def test_a_collection_as_a_vector_store_and_retriever(embedder, tmp_path):
    dim = small_dim(embedder)
    metadatas = [{"title": title, "topic": topic} for title, topic in zip(TITLES, TOPICS, strict=True)]
    store = GemvecVectorStore.from_texts(
        DOCUMENTS,
        GemvecEmbeddings(embedder, dim=dim),
        metadatas,
        ids=IDS,
        collection=tmp_path / "corpus",
    )
    assert store.collection.dim == dim
    assert_same_vectors(store.embeddings.embed_query(QUERY), embedder.encode_query(QUERY, dim=dim))

    found = store.similarity_search_with_score(QUERY, k=3, mode="dense")
    best = first_for(embedder, dim=dim)
    (document, score), *_ = found
    assert document.id == IDS[best] and document.page_content == DOCUMENTS[best]
    assert document.metadata["title"] == TITLES[best] and document.metadata["topic"] == TOPICS[best]
    expected = embedder.encode_document(DOCUMENTS[best], titles=TITLES[best], dim=dim)
    assert score == pytest.approx(float(expected @ embedder.encode_query(QUERY, dim=dim)), abs=1e-4)

    retriever = store.as_retriever(search_kwargs={"k": 1, "mode": "dense"})
    assert [d.id for d in retriever.invoke(QUERY)] == [IDS[best]]
    science = store.similarity_search(QUERY, k=5, filter={"topic": ["science", "computing"]})
    assert {d.id for d in science} == {"photosynthesis", "python"}
    assert [d.id for d in store.similarity_search(KEYWORD, k=5, mode="keyword")] == ["photosynthesis"]
    assert [d.id for d in asyncio.run(store.asimilarity_search(QUERY, k=1, mode="dense"))] == [IDS[best]]

    relevant = store.similarity_search_with_relevance_scores(QUERY, k=2, mode="dense")
    assert relevant[0][0].id == IDS[best] and all(0 <= s <= 1 for _, s in relevant)
    with pytest.raises(InputError, match="mode='dense'"):
        store.similarity_search_with_relevance_scores(QUERY)


def test_add_documents_ids_and_delete(tiny_embedder, tmp_path):
    store = GemvecVectorStore.from_texts(
        DOCUMENTS[:2], GemvecEmbeddings(tiny_embedder), ids=IDS[:2], collection=tmp_path / "c"
    )
    added = store.add_documents(
        [Document(page_content=DOCUMENTS[2]), Document(page_content=DOCUMENTS[3], id="x")]
    )
    assert added[1] == "x" and added[0].startswith("text:")
    assert store.add_texts([DOCUMENTS[2]]) == added[:1]  # the same text, the same id: stored once
    assert store.collection.count()[0] == 4
    assert store.similarity_search(DOCUMENTS[2], k=1, mode="keyword")[0].id == added[0]

    store.delete(["mars", "x"])
    assert sorted(d.source for d in store.collection.documents()) == sorted(["pacific", added[0]])
    store.delete()
    assert store.collection.count() == (0, 0)
    with pytest.raises(InputError, match="as many"):
        store.add_texts(DOCUMENTS[:2], metadatas=[{}])
    with pytest.raises(InputError, match="GemvecEmbeddings"):
        GemvecVectorStore.from_texts(DOCUMENTS, embedding=object(), collection=tmp_path / "other")
    reopened = GemvecVectorStore(tmp_path / "c", embedder=tiny_embedder, mode="keyword")
    assert reopened.collection.count() == (0, 0)
    with pytest.raises(InputError, match="Unknown search mode"):
        GemvecVectorStore(store.collection, mode="semantic")
