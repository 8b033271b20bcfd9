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
        products = (torch.ops.aten.linear, torch.ops.aten.mm, torch.ops.aten.matmul)
        if func.overloadpacket in products or func.overloadpacket == torch.ops.mkldnn._linear_pointwise:
            self.dtypes.update((args[0].dtype, args[1].dtype))
        return func(*args, **(kwargs or {}))


def encode_with(folder, native: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, set[torch.dtype]]:
    """bfloat16 vectors of TEXTS from a model loaded and run as on a CPU with or without native bf16."""
    monkeypatch.setattr(gemma3, "cpu_has_native_bf16", lambda: native)
    embedder = Embedder.load(folder, precision="bfloat16")
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
    upcast, upcast_dtypes = encode_with(tiny_model_dir, native=False, monkeypatch=monkeypatch)
    native, native_dtypes = encode_with(tiny_model_dir, native=True, monkeypatch=monkeypatch)
    assert upcast_dtypes == {torch.float32}
    assert torch.bfloat16 in native_dtypes
    assert ((upcast * native).sum(axis=1)).min() > 0.9999


def test_packed_weight_gives_the_plain_kernels_numbers() -> None:
    """On native-bf16 CPUs a bf16 Linear keeps oneDNN's packed weight: the same numbers as
    F.linear for any row count, the plain weight recoverable, plain again when converted."""
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(80, 96, generator=generator).bfloat16()
    layer = gemma3.Linear(weight)
    if not layer.packed:
        assert gemma3.pack_bfloat16_weight(weight) is None
        pytest.skip("no native bf16 (or no oneDNN) here: bf16 weights stay plain")
    for rows in (1, 7, 64, 300):
        x = torch.randn(rows, 96, generator=generator).bfloat16()
        assert torch.equal(layer(x), F.linear(x, weight))
    x = torch.randn(2, 5, 96, generator=generator).bfloat16()
    assert torch.equal(layer(x), F.linear(x, weight))  # any leading shape
    assert torch.equal(layer.to("cpu").weight, weight) and layer.packed
    assert gemma3.Linear(weight.float()).packed is False  # float32 keeps PyTorch's own kernel
    layer.float()
    assert not layer.packed and torch.equal(layer.weight, weight.float())
