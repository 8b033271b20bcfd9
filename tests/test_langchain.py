"""The LangChain adapter: same vectors as the Embedder, and it works inside a LangChain vector store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.vectorstores import InMemoryVectorStore

from gemvec.integrations.langchain import GemvecEmbeddings

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Cats sleep all day.", "日本語のテキストです。"]


def test_vectors_match_the_embedder(tiny_embedder):
    embeddings = GemvecEmbeddings(tiny_embedder)
    np.testing.assert_allclose(
        embeddings.embed_documents(TEXTS), tiny_embedder.encode_document(TEXTS), atol=1e-6
    )
    np.testing.assert_allclose(embeddings.embed_query("fox"), tiny_embedder.encode_query("fox"), atol=1e-6)
    assert isinstance(embeddings.embed_query("fox")[0], float)


@pytest.mark.filterwarnings("ignore:dim=")
def test_dim_and_query_task(tiny_embedder):
    embeddings = GemvecEmbeddings(tiny_embedder, dim=32, query_task="similarity")
    assert np.shape(embeddings.embed_documents(TEXTS)) == (3, 32)
    expected = tiny_embedder.encode("fox", task="similarity", dim=32)
    np.testing.assert_allclose(embeddings.embed_query("fox"), expected, atol=1e-6)


def test_in_a_langchain_vector_store(tiny_embedder):
    store = InMemoryVectorStore.from_texts(TEXTS, embedding=GemvecEmbeddings(tiny_embedder))
    (doc, score), *_ = store.similarity_search_with_score("a fox", k=3)
    cosines = tiny_embedder.encode_document(TEXTS) @ tiny_embedder.encode_query("a fox")
    assert doc.page_content == TEXTS[int(np.argmax(cosines))]
    assert score == pytest.approx(float(cosines.max()), abs=1e-5)
    asynchronous = asyncio.run(store.embeddings.aembed_query("x"))  # LangChain's default async path
    assert asynchronous == pytest.approx(tiny_embedder.encode_query("x").tolist(), abs=1e-6)


def test_sync_calls_from_many_threads_run_on_the_model_thread(tiny_embedder, monkeypatch):
    embeddings = GemvecEmbeddings(tiny_embedder)
    ran_on: set[str] = set()
    encode_prepared = tiny_embedder.encode_prepared

    def recording(prepared, **options):
        ran_on.add(threading.current_thread().name)
        return encode_prepared(prepared, **options)

    monkeypatch.setattr(tiny_embedder, "encode_prepared", recording)
    with ThreadPoolExecutor(4) as pool:
        documents = list(pool.map(embeddings.embed_documents, [[t] for t in TEXTS]))
        queries = list(pool.map(embeddings.embed_query, TEXTS))
    assert ran_on == {"gemvec-model"}
    monkeypatch.undo()
    np.testing.assert_allclose([d[0] for d in documents], tiny_embedder.encode_document(TEXTS), atol=1e-6)
    np.testing.assert_allclose(queries, tiny_embedder.encode_query(TEXTS), atol=1e-6)


# In a fresh process, so threads other tests leave behind cannot change the counts.
ASYNC_THREADS = """
import asyncio, os, sys, threading, torch
from gemvec import Embedder
from gemvec.integrations.langchain import GemvecEmbeddings
from gemvec.model.openmp import release_openmp_threads
torch.set_num_threads(2)  # a pool exists even on a 1-CPU runner
embedder = Embedder.load(sys.argv[1])
embeddings = GemvecEmbeddings(embedder)
torch.ones(1 << 22).mul_(2)  # torch work on the loading thread: its pool now has a worker
ran_on = set()
encode_prepared = embedder.encode_prepared
def record_thread(prepared, **options):
    ran_on.add(threading.current_thread().name)
    return encode_prepared(prepared, **options)
embedder.encode_prepared = record_thread
async def calls():
    documents = (embeddings.aembed_documents([f"text {i}"]) for i in range(3))
    return await asyncio.gather(*documents, embeddings.aembed_query("query"))
asyncio.run(calls())
threads = lambda: len(os.listdir("/proc/self/task"))
before = threads()
release_openmp_threads()  # anything the async calls left running on this thread?
print(before - threads(), *sorted(ran_on))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_async_calls_share_one_model_thread_and_free_the_loop_threads_pool(tiny_model_dir):
    run = subprocess.run(
        [sys.executable, "-c", ASYNC_THREADS, str(tiny_model_dir)], capture_output=True, text=True, check=True
    )
    left_on_loop_thread, *ran_on = run.stdout.split()
    assert left_on_loop_thread == "0", "the event-loop thread's OpenMP workers must be freed"
    assert ran_on == ["gemvec-model"], "every async call runs on the adapter's one model thread"


@pytest.mark.real_model
def test_real_model_finds_the_red_planet(real_embedder):
    planets = [
        "Venus is often called Earth's twin because of its similar size and proximity.",
        "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
        "Jupiter, the largest planet in our solar system, has a prominent red spot.",
        "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
    ]
    store = InMemoryVectorStore.from_texts(planets, embedding=GemvecEmbeddings(real_embedder))
    best = store.similarity_search("Which planet is known as the Red Planet?", k=1)[0]
    assert best.page_content.startswith("Mars")
