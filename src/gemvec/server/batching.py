"""Dynamic batching: one worker thread owns the model; concurrent requests are merged into batches.

Request handlers (on the event loop) put jobs on a queue and await an asyncio future.
The worker takes the oldest job, then every queued job that still fits the token and
input budgets, embeds all their texts in one ``encode`` call (which sorts by length
and splits into forward passes), and hands each job its rows. While one batch runs
the next one fills up, so batches grow with the load and a lone request is answered
at once. Under load there is one refinement: clients answered by the last batch send
their next request a few milliseconds later, so the worker waits up to ``gather_s``
for as many jobs as were in flight last time (never when they were one). Without
it, 32 closed-loop clients split into two alternating half batches.

Other work that needs the model (a search embeds its query) runs on the same thread
between batches through :meth:`ModelWorker.call`, so the model is never used by two
threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from gemvec.errors import WorkerStoppedError
from gemvec.server.metrics import ServerMetrics

T = TypeVar("T")
EmbedFn = Callable[[list[str]], np.ndarray]
log = logging.getLogger("gemvec.server")


@dataclass
class _Work:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(repr=False)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """Resolve the future from the worker thread (ignored if the caller has gone)."""

        def apply() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is waiting any more
            self.loop.call_soon_threadsafe(apply)


@dataclass
class _EmbedJob(_Work):
    texts: list[str] = field(default_factory=list)
    tokens: int = 0
    finish: Callable[[np.ndarray], np.ndarray] | None = None  # applied to this job's rows, on the worker


@dataclass
class _CallJob(_Work):
    fn: Callable[[], Any] = field(default=lambda: None)


class ModelWorker:
    """The thread that owns the model; see the module docstring."""

    def __init__(
        self,
        embed: EmbedFn,
        *,
        max_batch_tokens: int = 16384,
        max_batch_inputs: int = 256,
        gather_s: float = 0.02,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self._embed = embed
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_inputs = max_batch_inputs
        self.gather_s = gather_s
        self._in_flight = 1  # embedding jobs seen together at the last pick: the load
        self.metrics = metrics or ServerMetrics()
        self._queue: deque[_Work] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="gemvec-model", daemon=True)

    # -- the event-loop side --------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    async def embed(
        self, texts: list[str], tokens: int, finish: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> np.ndarray:
        """Rows of ``embed(texts)``, computed in a batch shared with other requests, then ``finish``-ed.

        ``finish`` (e.g. Matryoshka truncation) runs on the worker too, so every tensor operation
        stays on the model's thread and the event loop only moves bytes.
        """
        loop = asyncio.get_running_loop()
        job = _EmbedJob(loop, loop.create_future(), texts=texts, tokens=tokens, finish=finish)
        self._submit(job)
        return await job.future

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the model thread, between batches."""
        loop = asyncio.get_running_loop()
        job = _CallJob(loop, loop.create_future(), fn=fn)
        self._submit(job)
        return await job.future

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

    def _submit(self, job: _Work) -> None:
        with self._cond:
            if self._stopping or not self._thread.is_alive():
                raise WorkerStoppedError("The server is shutting down.")
            self._queue.append(job)
            self.metrics.queue_depth.set(len(self._queue))
            self._cond.notify()

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
                self.metrics.queue_depth.set(len(self._queue))
                return first
            assert isinstance(first, _EmbedJob)
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
            self.metrics.queue_depth.set(len(self._queue))
            return batch

    def _take_fitting(self, batch: list[_EmbedJob]) -> bool:
        """Move queued embedding jobs into ``batch`` while they fit; True once a budget is reached."""
        tokens = sum(j.tokens for j in batch)
        inputs = sum(len(j.texts) for j in batch)
        while self._queue and isinstance(self._queue[0], _EmbedJob):
            nxt = self._queue[0]
            if tokens + nxt.tokens > self.max_batch_tokens or inputs + len(nxt.texts) > self.max_batch_inputs:
                return True
            batch.append(self._queue.popleft())
            tokens += nxt.tokens
            inputs += len(nxt.texts)
        return bool(self._queue)  # a call waits at the head: do not hold it up

    def _run_call(self, job: _CallJob) -> None:
        if job.future.cancelled():
            return
        try:
            job.settle(job.fn())
        except Exception as exc:
            job.settle(error=exc)

    def _run_batch(self, jobs: list[_EmbedJob]) -> None:
        jobs = [j for j in jobs if not j.future.cancelled()]
        if not jobs:
            return
        texts = [t for j in jobs for t in j.texts]
        start = time.perf_counter()
        try:
            vectors = self._embed(texts)
        except Exception as exc:
            if len(jobs) == 1:
                log.warning("embedding failed: %s", exc)
                jobs[0].settle(error=exc)
                return
            # One job may be at fault: retry each alone so the others still get their answer.
            for job in jobs:
                self._run_batch([job])
            return
        self.metrics.model_busy.inc(amount=time.perf_counter() - start)
        self._record(jobs, len(texts))
        start = 0
        for job in jobs:
            rows = vectors[start : start + len(job.texts)]
            start += len(job.texts)
            try:
                job.settle(job.finish(rows) if job.finish else rows)
            except Exception as exc:
                job.settle(error=exc)

    def _record(self, jobs: list[_EmbedJob], inputs: int) -> None:
        tokens = sum(j.tokens for j in jobs)
        m = self.metrics
        m.batch_size.observe(inputs)
        m.batch_requests.observe(len(jobs))
        m.batch_tokens.observe(tokens)
        m.inputs.inc(amount=inputs)
        m.tokens.inc(amount=tokens)
