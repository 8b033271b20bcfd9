"""Dynamic batching: one worker thread owns the model; concurrent jobs are merged into batches.

Callers prepare their texts (:meth:`gemvec.embedder.Embedder.prepare`: prompts added, tokenised
once) and hand them to :class:`BatchWorker`, from asyncio (``await worker.embed(prepared)``) or
from any thread (``worker.embed_sync(prepared)``, or ``worker.submit(prepared)`` for a
``concurrent.futures.Future``). The worker takes the oldest job, then every queued job that
still fits the token and input budgets, embeds all their texts in one
:meth:`~gemvec.embedder.Embedder.encode_prepared` call (which sorts by length and splits into
forward passes), and gives each job its rows, Matryoshka-truncated and normalised as that job
asked. While one batch runs the next one fills up, so batches grow with the load and a lone
job is answered at once. Under load there is one refinement: clients answered by the last
batch send their next request a few milliseconds later, so the worker waits up to
``gather_s`` for as many jobs as were in flight last time (never when they were one). Without
it, 32 closed-loop clients split into two alternating half batches.

Other work that needs the model (a search embeds its query) runs on the same thread between
batches through :meth:`BatchWorker.call`, so the model is never used by two threads at once.
Every tensor operation stays on this thread: callers only move bytes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from gemvec.embedder import Embedder, PreparedTexts
from gemvec.errors import WorkerStoppedError
from gemvec.model.head import truncate_and_normalize

T = TypeVar("T")
log = logging.getLogger("gemvec")

# Preparing (tokenising) this many characters takes well under a millisecond: inline on an event
# loop that is cheaper than a hop to another thread, which on a busy machine waits for a time slice.
INLINE_PREPARE_CHARS = 8192


class BatchObserver(Protocol):
    """Told what the worker does, from the worker's thread and the submitting ones (metrics)."""

    def on_queue(self, depth: int) -> None:
        """Jobs waiting for the model now."""

    def on_batch(self, *, inputs: int, jobs: int, tokens: int, busy_s: float) -> None:
        """A merged batch was embedded: its texts, jobs, tokens, and the seconds it took."""


class _Unobserved:
    def on_queue(self, depth: int) -> None:
        pass

    def on_batch(self, *, inputs: int, jobs: int, tokens: int, busy_s: float) -> None:
        pass


@dataclass
class _EmbedJob:
    prepared: PreparedTexts
    dim: int | None
    normalize: bool
    tokens: int
    future: Future = field(default_factory=Future, repr=False)


@dataclass
class _CallJob:
    fn: Callable[[], Any]
    future: Future = field(default_factory=Future, repr=False)


class BatchWorker:
    """The thread that owns the model; see the module docstring. ``embedder``: anything with
    :meth:`~gemvec.embedder.Embedder.encode_prepared` (tests pass stand-ins).

    Budgets bound what is merged: ``max_batch_tokens`` (after truncation) and ``max_batch_inputs``
    per merged batch; a job over either runs alone. ``batch_size`` caps each forward pass.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch_tokens: int = 16384,
        max_batch_inputs: int = 256,
        gather_s: float = 0.02,
        batch_size: int = 32,
        observer: BatchObserver | None = None,
        name: str = "gemvec-model",
    ) -> None:
        self.embedder = embedder
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_inputs = max_batch_inputs
        self.gather_s = gather_s
        self.batch_size = batch_size
        self.observer: BatchObserver = observer or _Unobserved()
        self._in_flight = 1  # embedding jobs seen together at the last pick: the load
        self._queue: deque[_EmbedJob | _CallJob] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- the callers' side ----------------------------------------------------------------

    def start(self) -> BatchWorker:
        self._thread.start()
        return self

    def submit(self, prepared: PreparedTexts, *, dim: int | None = None, normalize: bool = True) -> Future:
        """Queue ``prepared``; the future gets its rows, (N, dim) float32, computed in a batch
        shared with other jobs. ``dim``: a size :func:`gemvec.embedder.check_dim` accepted, or
        None for all."""
        return self._submit(_EmbedJob(prepared, dim, normalize, prepared.tokens))

    def embed_sync(
        self, prepared: PreparedTexts, *, dim: int | None = None, normalize: bool = True
    ) -> np.ndarray:
        """:meth:`submit`, waiting for the rows (from any thread but the worker's)."""
        return self.submit(prepared, dim=dim, normalize=normalize).result()

    async def embed(
        self, prepared: PreparedTexts, *, dim: int | None = None, normalize: bool = True
    ) -> np.ndarray:
        """:meth:`submit`, awaiting the rows."""
        return await asyncio.wrap_future(self.submit(prepared, dim=dim, normalize=normalize))

    def submit_call(self, fn: Callable[[], T]) -> Future:
        """Run ``fn()`` on the model thread, between batches; the future gets its result."""
        return self._submit(_CallJob(fn))

    async def call(self, fn: Callable[[], T]) -> T:
        """:meth:`submit_call`, awaiting the result."""
        return await asyncio.wrap_future(self.submit_call(fn))

    def stop(self, timeout: float | None = None) -> None:
        """Finish everything already queued, then end the thread (blocking)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def _submit(self, job: _EmbedJob | _CallJob) -> Future:
        with self._cond:
            if self._stopping or not self._thread.is_alive():
                raise WorkerStoppedError("The model worker has stopped (shutting down); try again later.")
            self._queue.append(job)
            self.observer.on_queue(len(self._queue))
            self._cond.notify()
        return job.future

    # -- the worker thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            if isinstance(batch, _CallJob):
                self._run_call(batch)
            else:
                self._run_batch(batch)

    def _next(self) -> _CallJob | list[_EmbedJob] | None:
        """The next call, or the oldest embedding job plus queued jobs that fit the budgets."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            if isinstance(first, _CallJob):
                self.observer.on_queue(len(self._queue))
                return first
            batch = [first]
            full = self._take_fitting(batch)
            deadline = time.monotonic() + self.gather_s
            while not full and len(batch) < self._in_flight and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                full = self._take_fitting(batch)
            self._in_flight = len(batch) + sum(isinstance(j, _EmbedJob) for j in self._queue)
            self.observer.on_queue(len(self._queue))
            return batch

    def _take_fitting(self, batch: list[_EmbedJob]) -> bool:
        """Move queued embedding jobs into ``batch`` while they fit; True once a budget is reached."""
        tokens = sum(j.tokens for j in batch)
        inputs = sum(len(j.prepared) for j in batch)
        while self._queue and isinstance(self._queue[0], _EmbedJob):
            nxt = self._queue[0]
            size = len(nxt.prepared)
            if tokens + nxt.tokens > self.max_batch_tokens or inputs + size > self.max_batch_inputs:
                return True
            batch.append(self._queue.popleft())
            tokens += nxt.tokens
            inputs += size
        return bool(self._queue)  # a call waits at the head: do not hold it up

    @staticmethod
    def _run_call(job: _CallJob) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn())
        except Exception as exc:
            job.future.set_exception(exc)

    def _run_batch(self, jobs: list[_EmbedJob]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]  # drops cancelled ones
        if live:
            self._embed(live)

    def _embed(self, jobs: list[_EmbedJob]) -> None:
        merged = PreparedTexts.concat([j.prepared for j in jobs])
        start = time.perf_counter()
        try:
            vectors = self.embedder.encode_prepared(
                merged, normalize=False, batch_size=self.batch_size, show_progress=False
            )
        except Exception as exc:
            if len(jobs) == 1:
                log.warning("embedding failed: %s", exc)
                jobs[0].future.set_exception(exc)
                return
            # One job may be at fault: retry each alone so the others still get their answer.
            for job in jobs:
                self._embed([job])
            return
        busy = time.perf_counter() - start
        tokens = sum(j.tokens for j in jobs)
        self.observer.on_batch(inputs=len(merged), jobs=len(jobs), tokens=tokens, busy_s=busy)
        row = 0
        for job in jobs:
            rows = vectors[row : row + len(job.prepared)]
            row += len(job.prepared)
            try:
                job.future.set_result(_finish(rows, job.dim, job.normalize))
            except Exception as exc:
                job.future.set_exception(exc)


def _finish(rows: np.ndarray, dim: int | None, normalize: bool) -> np.ndarray:
    """One job's rows: its Matryoshka size, normalised if asked (full-size raw rows stay as they are)."""
    if dim is None and not normalize:
        return rows
    return truncate_and_normalize(torch.from_numpy(rows), dim, normalize).numpy()


async def prepare_off_loop(prepare: Callable[[], T], chars: int) -> T:
    """``prepare()`` (tokenising ``chars`` characters) inline when short, else in a thread, so the
    event loop stays free."""
    if chars <= INLINE_PREPARE_CHARS:
        return prepare()
    return await asyncio.to_thread(prepare)
