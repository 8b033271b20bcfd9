"""The CPU matmul kernels PyTorch offers for EmbeddingGemma's linear layers, timed as the model uses them.

All 96 linear weights of the 24-layer encoder (fused q/k/v 1280×768, o 768×768, fused
gate/up 2304×768, down 768×1152), each a distinct tensor so they stream from memory as in a
real forward pass, at M = 16 tokens (one query), 512 and 2,048 (a batch). Kernels: float32,
bfloat16 (PyTorch's kernel; gemvec's packed-weight layer, "bfloat16 packed"; and computed in
float32 from the bf16 values: what gemvec's bfloat16 does on CPUs without native bf16), int8
weights dequantised per call (what gemvec's int8 does), ``_weight_int8pack_mm`` (int8
weight-only), fbgemm dynamic int8 (int8 activations too, one scale per tensor), oneDNN's int8
linear on int8 activations (the matmul of gemvec's int8-dynamic: "onednn int8") and gemvec's
whole int8-dynamic layer (rotation, per-token quantisation, matmul, row scales: "int8-dynamic
layer").
Milliseconds per pass over all 96 weights, the speed-up over float32, and with ``--json`` each
kernel's rate in GFLOP/s (2 M N K per matmul), the peaks ``speed.py --peaks`` divides by.

    python benchmarks/matmul_kernels.py [--threads 2] [--sizes 16,512,2048] [--json peaks.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable

import torch

from gemvec.model.gemma3 import Linear, bfloat16_linear_in_float32
from gemvec.model.int8_compute import Int8ComputeLinear, _onednn_linear, build_fused_quantiser
from gemvec.precision import Precision, cpu_flags, onednn_int8_available

SHAPES = [(1280, 768), (768, 768), (2304, 768), (768, 1152)]
LAYERS = 24
COMPUTE_DTYPE = Precision.INT8_DYNAMIC.compute_dtype  # int8-dynamic's activations: bf16 or float32


def per_channel_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = weight.abs().amax(1).clamp(min=1e-8) / 127
    return torch.round(weight / scale[:, None]).to(torch.int8), scale


def kernels(weights: list[torch.Tensor]) -> dict[str, Callable[[torch.Tensor, int], torch.Tensor]]:
    """name -> f(x, index of the weight)"""
    bf16 = [w.bfloat16() for w in weights]
    bf16_packed = [Linear(w) for w in bf16]  # oneDNN's blocked layout where the CPU has native bf16
    bf16_inputs: dict[tuple, torch.Tensor] = {}

    def as_bf16(x: torch.Tensor) -> torch.Tensor:
        """x in bfloat16, converted once (in the model the activations are bf16 already)."""
        key = (x.data_ptr(), tuple(x.shape))
        if key not in bf16_inputs:
            bf16_inputs[key] = x.bfloat16()
        return bf16_inputs[key]

    int8 = [per_channel_int8(w) for w in weights]
    packed = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated in recent PyTorch
        for w in weights:
            _, scale = per_channel_int8(w)
            q = torch.quantize_per_channel(w, scale, torch.zeros(len(w), dtype=torch.long), 0, torch.qint8)
            packed.append(torch.ops.quantized.linear_prepack(q, None))
    linear = torch.nn.functional.linear
    int8_layers = [Int8ComputeLinear.from_float(w) for w in weights]
    codes = {k: torch.randint(-127, 128, (4096, k), dtype=torch.int8) for _, k in SHAPES}
    # VNNI multiplies unsigned codes: the same ones plus 128 (zero point 128), as the layer does
    unsigned = {k: (c.to(torch.int16) + 128).to(torch.uint8) for k, c in codes.items()}

    def onednn(x: torch.Tensor, i: int) -> torch.Tensor:  # the int8 x int8 -> bf16 matmul alone
        layer = int8_layers[i]
        q = (unsigned if layer.kernel == "onednn-unsigned" else codes)[x.shape[1]][: x.shape[0]]
        return _onednn_linear(q, layer.weight_t, layer.scales, layer.zero_points, COMPUTE_DTYPE)

    extra = {}
    if onednn_int8_available():
        build_fused_quantiser()  # the layer's large-batch quantiser, built before any timing
        extra = {
            "onednn int8": onednn,
            "int8-dynamic layer": lambda x, i: int8_layers[i](x.to(COMPUTE_DTYPE)),
        }
    return {
        "float32": lambda x, i: linear(x, weights[i]),
        "bfloat16": lambda x, i: linear(x.bfloat16(), bf16[i]),
        "bfloat16 packed": lambda x, i: bf16_packed[i](as_bf16(x)),  # gemvec's bf16 layer (Linear)
        "bfloat16 in float32": lambda x, i: bfloat16_linear_in_float32(x.bfloat16(), bf16[i]),
        "int8 dequantised": lambda x, i: linear(x, int8[i][0].float() * int8[i][1][:, None]),
        "int8pack_mm": lambda x, i: torch._weight_int8pack_mm(x, int8[i][0], int8[i][1]),
        "fbgemm dynamic int8": lambda x, i: torch.ops.quantized.linear_dynamic(x, packed[i], True),
    } | extra


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="16,512,2048")
    parser.add_argument("--json", help="write {kernel: {M: GFLOP/s}} and the CPU's flags here")
    parser.add_argument("--kernels", help="comma-separated subset (int8pack_mm takes minutes on some CPUs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    weights = [torch.randn(n, k) * 0.02 for _ in range(LAYERS) for n, k in SHAPES]
    inputs = {k: torch.randn(max(map(int, args.sizes.split(","))), k) for _, k in SHAPES}
    table = kernels(weights)
    if args.kernels:
        table = {name: table[name] for name in args.kernels.split(",")}
    flops_per_row = 2 * LAYERS * sum(n * k for n, k in SHAPES)
    rates: dict[str, dict[int, float]] = {name: {} for name in table}
    print(f"{'M':>5} " + " ".join(f"{name:>22}" for name in table))
    for m in map(int, args.sizes.split(",")):
        cells = []
        baseline = None
        for name, kernel in table.items():
            passes = 1 if m * (6 if name == "bfloat16" else 1) > 4096 else 3
            for i, w in enumerate(weights[: len(SHAPES)]):  # warm-up
                kernel(inputs[w.shape[1]][:m], i)
            started = time.perf_counter()
            for _ in range(passes):
                for i, w in enumerate(weights):
                    kernel(inputs[w.shape[1]][:m], i)
            ms = (time.perf_counter() - started) / passes * 1000
            baseline = baseline or ms
            rates[name][m] = flops_per_row * m / (ms / 1000) / 1e9
            cells.append(f"{ms:>10.1f} ms ({baseline / ms:4.2f}x)")
        print(f"{m:>5} " + " ".join(f"{c:>22}" for c in cells), flush=True)
    print("GFLOP/s: " + "; ".join(f"{n} {max(r.values()):.0f}" for n, r in rates.items()))
    if args.json:
        flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))
        report = {"threads": args.threads, "flags": flags, "gflops": rates}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
