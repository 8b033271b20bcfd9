"""int8-dynamic: int8 activations (one scale per token) times int8 weights, exact int32 sums."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gemvec import Embedder
from gemvec.errors import PrecisionError
from gemvec.model import int8_compute
from gemvec.model.int8_compute import Int8ComputeLinear, hadamard, quantize_rows, rotate, rotate_weight
from gemvec.model.quantize import quantize
from gemvec.model.rotate_quantize import NativeKernel
from gemvec.precision import Precision, int8_dot_products, onednn_int8_available, parse_precision

TEXTS = ["Mars is the Red Planet.", "Le renard brun saute.", "日本語のテキスト", "word " * 40, ""]


def reference_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """What int8 compute must equal: per-row-quantised rotated activations times the rotated
    int8 weight, in float64."""
    codes, scales = quantize_rows(rotate(x, hadamard(64)))
    q = quantize(rotate_weight(weight), 8)
    return (codes.double() @ q.codes.double().T) * scales.double() * q.scales.double()


@pytest.mark.parametrize("rows", [1, 5, 40, 300])
@pytest.mark.parametrize(
    ("dot_products", "kernel"), [("amx", "onednn-signed"), ("vnni", "onednn-unsigned"), (None, "float")]
)
def test_int8_linear_is_exact_integer_arithmetic_on_every_kernel(
    rows, dot_products, kernel, monkeypatch
) -> None:
    """AMX multiplies signed codes; VNNI the same codes + 128 as unsigned ones (zero point 128);
    a CPU with neither multiplies them in float32. All three give the exact int32 sums (300 rows:
    the compiled quantiser, were it built, takes them)."""
    if kernel.startswith("onednn") and not onednn_int8_available():
        pytest.skip("this PyTorch has no oneDNN int8 linear")
    monkeypatch.setattr(int8_compute, "cpu_int8_dot_products", lambda: dot_products)
    generator = torch.Generator().manual_seed(rows)
    weight = torch.randn(48, 64, generator=generator) * 0.05
    x = torch.randn(rows, 64, generator=generator)
    layer = Int8ComputeLinear.from_float(weight)
    assert layer.kernel == kernel
    out = layer(x)
    torch.testing.assert_close(out.double(), reference_linear(x, weight), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer(x.view(1, rows, 64)), out.view(1, rows, 48))  # any leading shape
    assert torch.equal(layer.quantized.codes, quantize(rotate_weight(weight), 8).codes)  # for saving


def test_large_codes_sum_exactly_on_every_kernel(monkeypatch) -> None:
    """Codes near +-127 in every position: AVX2's int8 path saturates such pairs of products at
    16 bits (why CPUs without VNNI/AMX multiply in float32); every kernel here is exact."""
    weight = torch.ones(16, 128).index_fill_(1, torch.arange(0, 128, 2), -1.0)
    x = weight[:3].clone()
    x[1] *= -1
    monkeypatch.setattr(NativeKernel, "enabled", False)  # it always rotates; here rows go unrotated
    for dot_products in ("amx", "vnni", None):
        monkeypatch.setattr(int8_compute, "cpu_int8_dot_products", lambda d=dot_products: d)
        if dot_products and not onednn_int8_available():
            continue
        layer = Int8ComputeLinear(quantize(weight, 8))  # taken as rotated: codes of +-127
        layer.rotation = torch.eye(128)
        out = layer(x)
        torch.testing.assert_close(out, x @ weight.T, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"}, "amx"),
        ({"avx2", "avx512f", "avx512_vnni"}, "vnni"),  # Cascade Lake, Ice Lake, Zen 4
        ({"avx2", "avx_vnni"}, "vnni"),  # Alder Lake and later client cores
        ({"avx2", "fma"}, None),  # Haswell .. Comet Lake, Zen 1-3
        (set(), None),  # not x86, or no /proc/cpuinfo
    ],
)
def test_int8_kernel_by_cpu_flags(flags: set[str], expected: str | None) -> None:
    assert int8_dot_products(flags) == expected


def test_rotation_is_exact_in_float_and_spreads_outliers() -> None:
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(40, 256, generator=generator) * 0.05
    x = torch.randn(8, 256, generator=generator)
    sylvester = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
    assert torch.equal(hadamard(4), sylvester)
    torch.testing.assert_close(rotate(x, hadamard(128)) @ rotate_weight(weight).T, x @ weight.T)
    x[:, 3] = 30 * x.pow(2).mean().sqrt()  # one outlier channel per token, as after Gemma's norms
    exact = x @ weight.T
    plain = Int8ComputeLinear(quantize(weight, 8))  # codes taken as already rotated: none
    plain.rotation, plain.rotation_bf16 = torch.eye(128), torch.eye(128, dtype=torch.bfloat16)
    errors = [
        ((layer(x) - exact).norm(dim=1) / exact.norm(dim=1)).mean()
        for layer in (plain, Int8ComputeLinear.from_float(weight))
    ]
    assert errors[1] < errors[0] / 3, errors


def test_an_outlier_token_only_coarsens_its_own_row() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(32, 64, generator=generator) * 0.05
    x = torch.randn(6, 64, generator=generator)
    x[2, 7] = 5000.0  # EmbeddingGemma's activations reach ~1e5 on a few tokens
    out = Int8ComputeLinear.from_float(weight)(x)
    exact = x @ weight.T
    clean = torch.arange(6) != 2
    error = (out - exact)[clean].norm(dim=1) / exact[clean].norm(dim=1)
    assert error.max() < 0.02
    # one scale for the whole tensor (fbgemm's dynamic int8) would have wiped the clean rows out
    per_tensor = torch.round(x / (x.abs().max() / 127))
    assert (per_tensor[clean] == 0).float().mean() > 0.9


def test_precision_name_and_aliases() -> None:
    assert parse_precision("int8-dynamic") is Precision.INT8_DYNAMIC
    assert parse_precision("W8A8") is Precision.INT8_DYNAMIC
    assert Precision.INT8_DYNAMIC.weight_bits == 8 and Precision.INT8_DYNAMIC.int8_compute
    assert not Precision.INT8.int8_compute


def test_tiny_model_close_to_float32_and_saved_folders_reload(
    tiny_model_dir: Path, tiny_embedder: Embedder, tmp_path: Path
) -> None:
    dynamic = Embedder.load(tiny_model_dir, "int8-dynamic")
    vectors = dynamic.encode_document(TEXTS)
    cosine = (vectors * tiny_embedder.encode_document(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.99 and cosine.max() < 1 - 1e-7
    folder = dynamic.save(tmp_path / "w8a8")
    manifest = json.loads((folder / "gemvec_quant.json").read_text())
    assert manifest["precision"] == "int8-dynamic" and manifest["format"] == 3
    assert manifest["rotation"] == {"kind": "hadamard", "block": 128}
    reloaded = Embedder.load(folder)
    assert reloaded.precision is Precision.INT8_DYNAMIC
    np.testing.assert_array_equal(reloaded.encode_document(TEXTS), vectors)
    # an int8 folder's (unrotated) weights load as int8-dynamic too: rotated and quantised again
    int8_folder = Embedder.load(tiny_model_dir, "int8").save(tmp_path / "int8")
    from_int8 = Embedder.load(int8_folder, "int8-dynamic").encode_document(TEXTS)
    assert (from_int8 * vectors).sum(axis=1).min() > 0.999
    # the rotated weights mean nothing to weight-only int8 or any float precision
    for other in ("int8", "bfloat16"):
        with pytest.raises(PrecisionError, match="holds int8-dynamic weights"):
            Embedder.load(folder, other)


def test_real_model_worst_cosine_to_float32(
    real_model_dir: Path, real_embedder: Embedder, shared_data: Path
) -> None:
    lines = (shared_data / "scifact/corpus.jsonl").read_text(encoding="utf-8").splitlines()[:24]
    texts = [" ".join(json.loads(line)["text"].split()[:80]) for line in lines]
    texts += [
        line.split("\t")[0] for line in (shared_data / "stsb/ja.test.tsv").read_text().splitlines()[1:17]
    ]
    dynamic = Embedder.load(real_model_dir, "int8-dynamic")
    documents = (dynamic.encode_document(texts) * real_embedder.encode_document(texts)).sum(axis=1)
    queries = (dynamic.encode_query(texts[:8]) * real_embedder.encode_query(texts[:8])).sum(axis=1)
    # measured 0.9971-0.9979 on SciFact + STS-B texts; the bar is 0.995
    assert documents.min() >= 0.995 and queries.min() >= 0.995
    assert documents.max() < 1 - 1e-6, "activations must really be quantised"
