"""bfloat16 on CPUs without native bf16: linear layers computed in float32 from bf16 operands.

The numbers must be those of PyTorch's bf16 kernel (float32 accumulation, one rounding), and
the matmuls must really run in float32 there — PyTorch's emulated bf16 matmul is 3-7× slower.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import gemvec.model.gemma3 as gemma3
from gemvec import Embedder
from gemvec.model.gemma3 import bfloat16_linear_in_float32

TEXTS = [
    "short",
    "Le renard brun rapide saute par-dessus le chien paresseux. " * 4,
    "敏捷的棕色狐狸跳过了懒狗。",
]


class MatmulDtypes(TorchDispatchMode):
    """Records the dtype of every matrix product PyTorch dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.linear, torch.ops.aten.mm, torch.ops.aten.matmul):
            self.dtypes.update((args[0].dtype, args[1].dtype))
        return func(*args, **(kwargs or {}))


def encode_with(
    embedder: Embedder, native: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[np.ndarray, set[torch.dtype]]:
    monkeypatch.setattr(gemma3, "cpu_has_native_bf16", lambda: native)
    with MatmulDtypes() as seen:
        vectors = embedder.encode_query(TEXTS)
    return vectors, seen.dtypes


def test_rounds_like_the_native_kernel() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 96, generator=generator).bfloat16()
    weight = torch.randn(80, 96, generator=generator).bfloat16()
    ours = bfloat16_linear_in_float32(x, weight)
    assert ours.dtype is torch.bfloat16
    exact = F.linear(x.double(), weight.double()).bfloat16()  # correctly rounded
    native = F.linear(x, weight)
    for result in (ours, native):
        steps = (result.float() - exact.float()).abs() / exact.float().abs().clamp(min=1e-3)
        assert (result != exact).float().mean() < 0.01
        assert steps.max() <= 2**-7, "at most one bf16 step from the correctly rounded value"


def test_cpu_without_native_bf16_multiplies_in_float32(tiny_model_dir, monkeypatch) -> None:
    bf16 = Embedder.load(tiny_model_dir, precision="bfloat16")
    upcast, upcast_dtypes = encode_with(bf16, native=False, monkeypatch=monkeypatch)
    native, native_dtypes = encode_with(bf16, native=True, monkeypatch=monkeypatch)
    assert upcast_dtypes == {torch.float32}
    assert torch.bfloat16 in native_dtypes
    assert ((upcast * native).sum(axis=1)).min() > 0.9999
