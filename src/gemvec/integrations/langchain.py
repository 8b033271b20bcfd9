"""LangChain ``Embeddings`` backed by a local gemvec Embedder (extra: ``pip install 'gemvec[langchain]'``).

    from gemvec.integrations.langchain import GemvecEmbeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore.from_texts(texts, embedding=GemvecEmbeddings(dim=256))
    store.similarity_search("query")

Documents get the document prompt and queries the search-query prompt, as EmbeddingGemma
was trained. To use a running ``gemvec serve`` instead, point LangChain's OpenAI embeddings
at ``http://127.0.0.1:8000/v1`` (with ``check_embedding_ctx_length=False``: gemvec takes text,
not token ids).

Every call, sync or async, runs on one model thread (a :class:`gemvec.batching.BatchWorker`),
never on the caller's thread or asyncio's shared pool (LangChain's default for async), and
concurrent calls are merged into shared batches there. Before handing work over, the calling
thread's OpenMP workers are freed: two threads that both ran torch make libgomp throttle (see
``gemvec.model.openmp``). ``benchmarks/async_threads.py`` measures the async path against
LangChain's default; figures in BENCHMARKS.md.
"""

from __future__ import annotations

import threading

from gemvec.batching import BatchWorker, prepare_off_loop
from gemvec.embedder import Embedder, PreparedTexts, check_dim
from gemvec.errors import require
from gemvec.model.openmp import release_openmp_threads
from gemvec.prompts import Task

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
            embedder = Embedder.load(model, precision)
        self.embedder = embedder
        self.dim = None if dim is None else check_dim(dim, embedder.dim)
        self.query_task = query_task
        self.batch_size = batch_size
        self._worker: BatchWorker | None = None
        self._worker_lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        prepared = self._documents(texts)
        return self._model_worker().embed_sync(prepared, dim=self.dim).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._model_worker().embed_sync(self._query(text), dim=self.dim)[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        texts = list(texts)
        prepared = await prepare_off_loop(lambda: self._documents(texts), sum(map(len, texts)))
        return (await self._model_worker().embed(prepared, dim=self.dim)).tolist()

    async def aembed_query(self, text: str) -> list[float]:
        return (await self._model_worker().embed(self._query(text), dim=self.dim))[0].tolist()

    def _documents(self, texts: list[str]) -> PreparedTexts:
        return self.embedder.prepare(list(texts), Task.DOCUMENT)

    def _query(self, text: str) -> PreparedTexts:
        return self.embedder.prepare([text], self.query_task)

    def _model_worker(self) -> BatchWorker:
        """The adapter's model thread (started on first use), after freeing the calling thread's
        OpenMP pool (if it ran torch: loading, other work), which would throttle the worker's."""
        with self._worker_lock:
            if self._worker is None:
                self._worker = BatchWorker(self.embedder, batch_size=self.batch_size).start()
        release_openmp_threads()
        return self._worker
