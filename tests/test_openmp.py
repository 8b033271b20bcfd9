"""Releasing a thread's OpenMP workers (gemvec serve does it after loading the model)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from gemvec import Embedder
from gemvec.model.openmp import release_openmp_threads

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")


@pytest.fixture
def two_torch_threads() -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(2)  # a pool exists even on a 1-CPU runner
    yield
    torch.set_num_threads(saved)


# Run in a fresh process, so threads other tests leave behind cannot change the counts. The
# worker threads are told apart by id: the ones a parallel region starts on this thread. A joined
# thread can stay listed in /proc for a moment (the kernel wakes the joiner before it unlists the
# task), so the check waits up to 10 s for the ids to go.
COUNT_THREADS = """
import os, time, torch
from gemvec.model.openmp import loaded_libgomps, release_openmp_threads
torch.set_num_threads(2)  # a pool exists even on a 1-CPU runner
tasks = lambda: set(os.listdir("/proc/self/task"))
release_openmp_threads()  # start from no pool on this thread
before = tasks()
torch.ones(1 << 22).mul_(2)  # a parallel region: this thread's pool now has a worker
workers = tasks() - before
released = release_openmp_threads()
deadline = time.monotonic() + 10
while workers & tasks() and time.monotonic() < deadline:
    time.sleep(0.01)
left = len(workers & tasks())
torch.ones(1 << 22).mul_(2)  # the pool comes back when needed
print(len(loaded_libgomps()), released, len(workers), left, len(tasks() - before))
"""


@linux_only
def test_release_frees_the_calling_threads_pool() -> None:
    run = subprocess.run([sys.executable, "-c", COUNT_THREADS], capture_output=True, text=True, check=True)
    runtimes, released, started, left, restarted = map(int, run.stdout.split())
    assert runtimes >= 1, "torch's Linux wheel runs on libgomp"
    assert released >= 1
    assert started >= 1, "a parallel region on two threads starts a worker"
    assert left == 0, f"{left} of {started} worker thread(s) still running after the release"
    assert restarted == started


def test_vectors_unchanged_after_release(tiny_embedder: Embedder, two_torch_threads: None) -> None:
    texts = ["one short text", "a somewhat longer second text for the batch"]
    reference = tiny_embedder.encode(texts)
    release_openmp_threads()
    on_other_thread: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: on_other_thread.append(tiny_embedder.encode(texts)))
    worker.start()
    worker.join()
    np.testing.assert_array_equal(on_other_thread[0], reference)
    np.testing.assert_array_equal(tiny_embedder.encode(texts), reference)
