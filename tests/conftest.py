"""Shared fixtures: a tiny random checkpoint (always) and the real one (when EMBEDDINGGEMMA_DIR is set)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemvec import Embedder
from gemvec.model.fused import FusedOp
from gemvec.precision import PRECISION_ENV
from gemvec.testing import make_tiny_checkpoint

REAL_MODEL_ENV = "EMBEDDINGGEMMA_DIR"
# ../shared next to the checkout, or wherever $GEMVEC_SHARED points (.ci/run sets it).
SHARED = os.environ.get("GEMVEC_SHARED") or Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = Path(SHARED) / "data"


@pytest.fixture(scope="session", autouse=True)
def float32_unless_a_test_says_otherwise() -> Iterator[None]:
    """Pin the default precision, CLI subprocesses included: it depends on the CPU (bfloat16 where
    it has native bf16, e.g. AVX512-BF16), and most tests compare with float32 references. Tests
    of the default rule clear the variable and pass CPU flags themselves."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PRECISION_ENV, "float32")
        yield


@pytest.fixture(scope="session", autouse=True)
def plain_ops_unless_a_test_says_otherwise() -> Iterator[None]:
    """No background compiles (gemvec.model.fused) in the suite, CLI subprocesses included:
    they would take a core from the tests for a minute, and whether a batch ran fused would
    depend on timing. tests/test_fused.py switches them on and checks they match."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEMVEC_COMPILE", "0")
        patch.setattr(FusedOp, "enabled", False)
        yield


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fingerprints and eval caches go to a temporary folder, not the user's ~/.cache/gemvec."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEMVEC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete random EmbeddingGemma-shaped checkpoint (hidden 64, 4 layers, window 9)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_embedder(tiny_model_dir: Path) -> Embedder:
    return Embedder.load(tiny_model_dir)


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    folder = os.environ.get(REAL_MODEL_ENV)
    if not folder:
        pytest.skip(f"{REAL_MODEL_ENV} is not set: run ../shared/bin/fetch-embeddinggemma and export it")
    return Path(folder)


@pytest.fixture(scope="session")
def real_embedder(real_model_dir: Path) -> Embedder:
    return Embedder.load(real_model_dir, "float32")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA
