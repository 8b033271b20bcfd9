"""The native rotate-and-quantise kernel against an exact reference (float64 rotation)."""

from __future__ import annotations

import sys

import pytest
import torch

from gemvec.model import rotate_quantize
from gemvec.model.int8_compute import hadamard, quantize_rows, rotation_block
from gemvec.model.rotate_quantize import NativeKernel, native_rotate_quantize
from gemvec.precision import c_compiler

NATIVE_EXPECTED = sys.platform.startswith("linux") and c_compiler() is not None


def exact_reference(x: torch.Tensor, block: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate in float64 (exact for these inputs), round once to float32, quantise as torch does."""
    rotated = (x.double().reshape(-1, block) @ hadamard(block).double()).view(x.shape).float()
    return quantize_rows(rotated, offset)


def activation_rows(rows: int, width: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Rows of very different sizes, a few with an outlier channel, like the model's."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=generator) * torch.rand(rows, 1, generator=generator) * 20
    x[::3, width // 3] *= 40
    x[1::7] = 0  # an all-zero row: scale 1e-12/127, codes 0
    return x.to(dtype)


def test_the_kernel_builds_where_a_compiler_is() -> None:
    if not NATIVE_EXPECTED:
        pytest.skip("needs Linux and a C compiler")
    assert native_rotate_quantize(torch.zeros(2, 128), 128, 0) is not None


@pytest.mark.skipif(not NATIVE_EXPECTED, reason="needs Linux and a C compiler")
@pytest.mark.parametrize("width", [768, 1152, 64, 24])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("offset", [0, 128])
@pytest.mark.parametrize("rows", [1, 5, 300])
def test_codes_and_scales_match_an_exact_rotation(width, dtype, offset, rows) -> None:
    """Widths 768/1152 (the model's, 128 blocks), 64 and 24 (the tiny test models; 24 rotates in
    blocks of 8, below the kernel's 16-wide step); 300 rows run on several threads."""
    block = rotation_block(width)
    x = activation_rows(rows, width, dtype, seed=width + rows)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        codes, scales = native_rotate_quantize(x, block, offset)
    finally:
        torch.set_num_threads(threads)
    expected_codes, expected_scales = exact_reference(x, block, offset)
    assert codes.dtype == expected_codes.dtype and codes.shape == (rows, width)
    torch.testing.assert_close(scales, expected_scales, rtol=1e-6, atol=0)
    # the kernel sums in float32: a value a rounding away from a .5 tie may land on either side
    differ = codes.int() != expected_codes.int()
    assert (codes.int() - expected_codes.int()).abs().max() <= 1
    assert differ.sum() <= max(1, codes.numel() // 10_000)


def test_unavailable_cases_fall_back_to_torch(monkeypatch) -> None:
    x = torch.randn(4, 96)
    assert native_rotate_quantize(x, 64, 0) is None  # 64 does not divide 96
    assert native_rotate_quantize(x.double(), 32, 0) is None  # dtype it does not take
    monkeypatch.setattr(NativeKernel, "enabled", False)  # GEMVEC_COMPILE=0
    assert native_rotate_quantize(x, 32, 0) is None


def test_a_failed_build_is_logged_and_falls_back(monkeypatch, caplog) -> None:
    rotate_quantize._kernel.cache_clear()
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        with caplog.at_level("INFO", logger="gemvec.model.rotate_quantize"):
            assert native_rotate_quantize(torch.randn(2, 128), 128, 0) is None
        assert "no C compiler" in caplog.text
    finally:
        rotate_quantize._kernel.cache_clear()


def test_a_failed_compile_logs_what_the_compiler_said(monkeypatch, caplog, tmp_path) -> None:
    if not NATIVE_EXPECTED:
        pytest.skip("needs Linux and a C compiler")
    rotate_quantize._kernel.cache_clear()
    monkeypatch.setenv("GEMVEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(rotate_quantize, "C_SOURCE", "this is not C;")
    try:
        with caplog.at_level("INFO", logger="gemvec.model.rotate_quantize"):
            assert native_rotate_quantize(torch.randn(2, 128), 128, 0) is None
        assert "returned non-zero exit status" in caplog.text and "error" in caplog.text
    finally:
        rotate_quantize._kernel.cache_clear()
