"""LangChain ``Embeddings`` backed by a local gemvec Embedder (extra: ``pip install 'gemvec[langchain]'``).

    from gemvec.integrations.langchain import GemvecEmbeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore.from_texts(texts, embedding=GemvecEmbeddings(dim=256))
    store.similarity_search("query")

Documents get the document prompt and queries the search-query prompt, as EmbeddingGemma
was trained. To use a running ``gemvec serve`` instead, point LangChain's OpenAI embeddings
at ``http://127.0.0.1:8000/v1`` (with ``check_embedding_ctx_length=False``: gemvec takes text,
not token ids).

The async methods run on one thread kept for the model rather than on asyncio's shared pool
(LangChain's default), and free the event-loop thread's OpenMP workers first: two threads
that both ran torch make libgomp throttle (see ``gemvec.model.openmp``). On the 2-core machine
(``benchmarks/async_threads.py``, four runs) LangChain's default kept 1.60-1.66 CPUs busy,
this 1.97-1.99, and calls ran 0.95-1.18× as fast (about 1.1× typically).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from gemvec.errors import require
from gemvec.model.openmp import release_openmp_threads

if TYPE_CHECKING:
    from gemvec.embedder import Embedder

T = TypeVar("T")
R = TypeVar("R")

Embeddings = require("langchain_core.embeddings", "langchain", "The LangChain adapter").Embeddings


class GemvecEmbeddings(Embeddings):
    """``embed_documents`` = ``encode_document``, ``embed_query`` = ``encode_query`` (or another task)."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        model: str | None = None,
        precision: str | None = None,
        dim: int | None = None,
        query_task: str = "query",
        batch_size: int = 32,
    ) -> None:
        if embedder is None:
            from gemvec.embedder import Embedder

            embedder = Embedder.load(model, precision)
        self.embedder = embedder
        self.dim = dim
        self.query_task = query_task
        self.batch_size = batch_size
        self._model_thread: ThreadPoolExecutor | None = None

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self.embedder.encode_document(list(texts), dim=self.dim, batch_size=self.batch_size)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.encode(text, task=self.query_task, dim=self.dim).tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self._on_model_thread(self.embed_documents, list(texts))

    async def aembed_query(self, text: str) -> list[float]:
        return await self._on_model_thread(self.embed_query, text)

    async def _on_model_thread(self, work: Callable[[T], R], argument: T) -> R:
        """``work(argument)`` on this adapter's one model thread; concurrent calls queue there,
        which on a CPU is as fast as running them side by side and keeps one OpenMP pool."""
        if self._model_thread is None:
            self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gemvec-model")
        release_openmp_threads()  # this thread's pool, if it ran torch (loading, a sync call)
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, work, argument)
