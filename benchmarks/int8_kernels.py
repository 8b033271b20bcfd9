"""oneDNN's int8 linear under each x86 instruction-set cap: exact or not, and how fast.

Why int8-dynamic picks its kernel by CPU (``gemvec.model.int8_compute.int8_kernel``): each
cap runs in a child process with ``ONEDNN_MAX_CPU_ISA`` set (it must be set before torch
loads), multiplies random int8 codes (512x768 by 768x1280) as signed codes and as codes + 128
in uint8 with a zero point of 128, and compares with the exact sums. A matmul slower than a
second (oneDNN's reference kernel) is timed once.

    python benchmarks/int8_kernels.py [--caps ALL,AVX512_CORE_VNNI,AVX2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def child(cap: str) -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    weight = torch.randint(-127, 128, (1280, 768), dtype=torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(weight, None)
    signed = torch.randint(-127, 128, (512, 768), dtype=torch.int8)
    unsigned = (signed.to(torch.int16) + 128).to(torch.uint8)
    scales, zeros = torch.ones(1280), torch.zeros(1280, dtype=torch.int32)
    exact = signed.float() @ weight.float().T  # sums below 2^24: exact in float32
    for name, (x, zero_point) in {"signed": (signed, 0), "unsigned": (unsigned, 128)}.items():

        def matmul(x=x, zero_point=zero_point):
            return torch.ops.onednn.qlinear_pointwise(
                x, 1.0, zero_point, packed, scales, zeros, None, 1.0, 0, torch.float32, "none", [], ""
            )

        started = time.perf_counter()
        error = (matmul() - exact).abs().max().item()
        best = time.perf_counter() - started
        if best < 1.0:
            best = min(_timed(matmul) for _ in range(5))
        print(f"{cap:<18} {name:<9} max error {error:>10.1f}   {best * 1000:9.2f} ms", flush=True)


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--caps", default="ALL,AVX512_CORE_BF16,AVX512_CORE_VNNI,AVX2_VNNI,AVX2")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    for cap in args.caps.split(","):
        env = os.environ | {"ONEDNN_MAX_CPU_ISA": cap}
        subprocess.run([sys.executable, __file__, "--child", cap], env=env, check=True)


if __name__ == "__main__":
    main()
