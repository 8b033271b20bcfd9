"""The model worker on its own: merging under budgets, failure isolation, calls between batches, draining."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from gemvec.server.batching import ModelWorker, WorkerStoppedError


class RecordingEmbed:
    """Rows = the text lengths; blocks the first batch until released so requests pile up behind it."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not self.batches:
            self.release.wait(10)
        self.batches.append(list(texts))
        if self.fail_on in texts:
            raise ValueError(f"cannot embed {self.fail_on!r}")
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


async def _settle(worker: ModelWorker, embed: RecordingEmbed, jobs: list[tuple[list[str], int]]) -> list:
    first = asyncio.ensure_future(worker.embed(["first"], 1))
    await asyncio.sleep(0.05)  # the worker is now blocked inside the first batch
    rest = [asyncio.ensure_future(worker.embed(texts, tokens)) for texts, tokens in jobs]
    await asyncio.sleep(0.05)
    embed.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_queued_requests_merge_under_the_token_budget():
    embed = RecordingEmbed()
    worker = ModelWorker(embed, max_batch_tokens=10, max_batch_inputs=100)
    worker.start()
    jobs = [(["a", "bb"], 4), (["ccc"], 4), (["dddd"], 4), (["e"], 1)]
    results = asyncio.run(_settle(worker, embed, jobs))
    worker.stop()
    assert embed.batches == [["first"], ["a", "bb", "ccc"], ["dddd", "e"]]  # 4+4 fit, +4 would not
    for (texts, _), rows in zip(jobs, results[1:], strict=True):
        np.testing.assert_array_equal(rows[:, 0], [len(t) for t in texts])
    assert worker.metrics.batch_requests.count() == 3


def test_input_budget_and_an_oversized_job_runs_alone():
    embed = RecordingEmbed()
    worker = ModelWorker(embed, max_batch_tokens=5, max_batch_inputs=2)
    worker.start()
    asyncio.run(_settle(worker, embed, [(["x"] * 3, 50), (["y"], 1), (["z"], 1), (["w"], 1)]))
    worker.stop()
    assert embed.batches == [["first"], ["x", "x", "x"], ["y", "z"], ["w"]]


def test_one_bad_job_does_not_fail_the_others_or_the_worker():
    embed = RecordingEmbed(fail_on="poison")
    worker = ModelWorker(embed)
    worker.start()
    results = asyncio.run(_settle(worker, embed, [(["ok1"], 1), (["poison"], 1), (["ok2"], 1)]))
    assert isinstance(results[2], ValueError)
    np.testing.assert_array_equal(results[1][:, 0], [3])
    np.testing.assert_array_equal(results[3][:, 0], [3])

    async def after() -> np.ndarray:
        return await worker.embed(["still alive"], 2)

    assert asyncio.run(after())[0, 0] == len("still alive")
    worker.stop()


def test_calls_run_on_the_model_thread_and_errors_propagate():
    embed = RecordingEmbed()
    embed.release.set()
    worker = ModelWorker(embed)
    worker.start()

    async def calls() -> tuple[str, Exception | None]:
        name = await worker.call(lambda: threading.current_thread().name)
        try:
            await worker.call(lambda: 1 / 0)
        except ZeroDivisionError as exc:
            return name, exc
        return name, None

    name, error = asyncio.run(calls())
    worker.stop()
    assert name == "gemvec-model"
    assert isinstance(error, ZeroDivisionError)


def test_stop_drains_the_queue_then_refuses_new_work():
    embed = RecordingEmbed()
    worker = ModelWorker(embed)
    worker.start()

    async def scenario() -> list:
        pending = [asyncio.ensure_future(worker.embed([f"t{i}"], 1)) for i in range(5)]
        await asyncio.sleep(0.05)
        stopper = asyncio.get_running_loop().run_in_executor(None, worker.stop)
        await asyncio.sleep(0.05)
        embed.release.set()
        await stopper
        return await asyncio.gather(*pending)

    results = asyncio.run(scenario())
    assert [int(r[0, 0]) for r in results] == [2] * 5
    assert not worker.alive

    async def late() -> None:
        await worker.embed(["late"], 1)

    with pytest.raises(WorkerStoppedError):
        asyncio.run(late())


def test_finish_runs_per_job_on_the_worker_thread():
    embed = RecordingEmbed()
    embed.release.set()
    worker = ModelWorker(embed)
    worker.start()
    threads: list[str] = []

    def double(rows: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return rows * 2

    async def jobs() -> list:
        return await asyncio.gather(
            worker.embed(["abc"], 1, double),
            worker.embed(["x"], 1, lambda rows: 1 / 0),
            return_exceptions=True,
        )

    doubled, failed = asyncio.run(jobs())
    worker.stop()
    np.testing.assert_array_equal(doubled, [[6.0, 2.0]])
    assert isinstance(failed, ZeroDivisionError)
    assert threads == ["gemvec-model"]


def test_closed_loop_clients_are_gathered_into_one_batch():
    """Clients that resend as soon as they are answered end up in one batch, not alternating halves."""
    batches: list[int] = []

    def slow_embed(texts: list[str]) -> np.ndarray:
        batches.append(len(texts))
        threading.Event().wait(0.03)  # a forward pass
        return np.ones((len(texts), 2), dtype=np.float32)

    async def client(worker: ModelWorker, rounds: int, start: float) -> None:
        await asyncio.sleep(start)
        for _ in range(rounds):
            await worker.embed(["t"], 1)
            await asyncio.sleep(0.002)  # the client reads its answer, then asks again

    async def main(worker: ModelWorker, clients: int) -> None:
        # One client first, the others while its batch runs: without gathering the two groups
        # would alternate for ever ([1, 5, 1, 5, ...]).
        await asyncio.gather(*(client(worker, 8, 0.01 if i else 0.0) for i in range(clients)))

    worker = ModelWorker(slow_embed, gather_s=0.5)
    worker.start()
    asyncio.run(main(worker, 1))
    assert batches == [1] * 8  # a lone client never waits for company
    batches.clear()
    asyncio.run(main(worker, 6))
    worker.stop()
    assert sum(batches) == 48 and batches[-4:] == [6, 6, 6, 6]
