"""What every embedding adapter shares: an Embedder, a Matryoshka size, and one model thread.

Each adapter (LangChain, Haystack, LlamaIndex, Chroma) picks the prompts its framework's calls
mean (documents, queries) and hands texts to an :class:`EmbeddingRunner`, which prepares them
(prompt, titles, tokens) and embeds them on one model thread (a :class:`gemvec.batching.BatchWorker`),
sync or async, never on the caller's thread or asyncio's shared pool. Concurrent calls are merged
into shared batches there. Before handing work over, the calling thread's OpenMP workers are
freed: two threads that both ran torch make libgomp throttle (see ``gemvec.model.openmp``).
``benchmarks/async_threads.py`` measures the async path against LangChain's default; figures in
BENCHMARKS.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

from gemvec.batching import BatchWorker, prepare_off_loop
from gemvec.embedder import Embedder, PreparedTexts, check_dim
from gemvec.model.openmp import release_openmp_threads
from gemvec.prompts import Task, parse_task

Titles = Sequence[str | None] | None


class EmbeddingRunner:
    """Embeds texts for an adapter: ``embed(texts, task, titles)`` -> (N, dim) float32, normalised.

    ``dim``: a Matryoshka size (None: the model's). ``batch_size`` caps each forward pass.
    Titles go with the document prompt only; other tasks ignore them, so an adapter may always
    pass the titles it found.
    """

    def __init__(self, embedder: Embedder, *, dim: int | None = None, batch_size: int = 32) -> None:
        self.embedder = embedder
        self.dim = None if dim is None else check_dim(dim, embedder.dim)
        self.batch_size = batch_size
        self._worker: BatchWorker | None = None
        self._worker_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        embedder: Embedder | None = None,
        *,
        model: str | os.PathLike[str] | None = None,
        precision: str | None = None,
        dim: int | None = None,
        batch_size: int = 32,
    ) -> EmbeddingRunner:
        """A runner over ``embedder``, or over ``Embedder.load(model, precision)`` when it is None."""
        if embedder is None:
            embedder = Embedder.load(model, precision)
        return cls(embedder, dim=dim, batch_size=batch_size)

    @property
    def out_dim(self) -> int:
        """The size of the vectors this runner returns."""
        return self.dim or self.embedder.dim

    def prepare(self, texts: Sequence[str], task: Task | str, titles: Titles = None) -> PreparedTexts:
        """The texts with ``task``'s prompt (documents: with their titles), tokenised."""
        task = parse_task(task)
        titles = list(titles) if titles is not None and task is Task.DOCUMENT else None
        return self.embedder.prepare(list(texts), task, titles=titles)

    def embed(self, texts: Sequence[str], task: Task | str, titles: Titles = None) -> np.ndarray:
        """Embed on the model thread, waiting for the rows."""
        texts = list(texts)
        if not texts:
            return np.empty((0, self.out_dim), np.float32)
        return self.worker().embed_sync(self.prepare(texts, task, titles), dim=self.dim)

    async def aembed(self, texts: Sequence[str], task: Task | str, titles: Titles = None) -> np.ndarray:
        """Embed on the model thread, awaiting the rows (long inputs are tokenised off the loop)."""
        texts = list(texts)
        if not texts:
            return np.empty((0, self.out_dim), np.float32)
        prepared = await prepare_off_loop(lambda: self.prepare(texts, task, titles), sum(map(len, texts)))
        return await self.worker().embed(prepared, dim=self.dim)

    def worker(self) -> BatchWorker:
        """The model thread (started on first use), after freeing the calling thread's OpenMP pool
        (if it ran torch: loading, other work), which would throttle the worker's."""
        with self._worker_lock:
            if self._worker is None:
                self._worker = BatchWorker(self.embedder, batch_size=self.batch_size).start()
        release_openmp_threads()
        return self._worker
