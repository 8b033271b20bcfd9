"""Releasing a thread's OpenMP workers (gemvec serve does it after loading the model)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from gemvec import Embedder
from gemvec.model.openmp import loaded_libgomps, release_openmp_threads

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")


@pytest.fixture
def two_torch_threads() -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(2)  # a pool exists even on a 1-CPU runner
    yield
    torch.set_num_threads(saved)


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


@linux_only
def test_release_frees_the_calling_threads_pool(two_torch_threads: None) -> None:
    assert any("libgomp" in path for path in loaded_libgomps()), "torch's wheel runs on libgomp"
    torch.ones(1 << 22).mul_(2)  # a parallel region: this thread's pool now has a worker
    before = thread_count()
    assert release_openmp_threads() >= 1
    assert thread_count() < before
    torch.ones(1 << 22).mul_(2)  # and comes back when needed
    assert thread_count() == before


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
