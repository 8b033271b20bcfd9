"""int8-dynamic's activation step alone: the native rotate-and-quantise kernel against torch ops.

For each shape the model calls it with (a query's ~12 rows, one forward pass of ~730 rows, a
2,660-row pass; widths 768 and 1152) and each activation dtype, the microseconds per call of
``gemvec.model.rotate_quantize`` and of the torch path it replaces (a matmul by the 128x128
Hadamard blocks, then :func:`quantize_rows` as plain ops, or its compiled loop where
``--compiled`` builds it), best of several rounds, and how many codes differ from an exact
float64 rotation.

    python benchmarks/rotate_quantize_kernel.py [--threads 1] [--compiled]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from gemvec.model.int8_compute import QUANTIZE_ROWS, hadamard, quantize_rows, rotate
from gemvec.model.rotate_quantize import native_rotate_quantize
from gemvec.precision import cpu_flags

BLOCK, OFFSET = 128, 128  # the model's rotation block; VNNI's unsigned codes


def best_microseconds(function: Callable[[], object], calls: int, rounds: int = 5) -> float:
    function()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compiled", action="store_true", help="the torch path's compiled quantiser")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))
    print("cpu flags:", " ".join(flags), f"| {args.threads} thread(s)")
    if native_rotate_quantize(torch.zeros(1, BLOCK), BLOCK, OFFSET) is None:
        raise SystemExit("the native kernel is not available here (no C compiler, or GEMVEC_COMPILE=0)")
    quantise = QUANTIZE_ROWS if args.compiled else quantize_rows
    if args.compiled and not QUANTIZE_ROWS.build(torch.randn(64, 256, dtype=torch.bfloat16), OFFSET):
        raise SystemExit("the compiled quantiser did not build")
    print(f"{'rows':>5} {'width':>5} {'dtype':>9} {'torch us':>9} {'native us':>9} {'x':>5} {'codes off':>9}")
    generator = torch.Generator().manual_seed(0)
    for rows in (12, 730, 2660):
        for width in (768, 1152):
            for dtype in (torch.bfloat16, torch.float32):
                x = torch.randn(rows, width, generator=generator) * torch.rand(rows, 1, generator=generator)
                x = (x * 20).to(dtype)
                block = hadamard(BLOCK).to(dtype)
                calls = max(5, 20_000 // rows)
                torch_us = best_microseconds(lambda x=x, b=block: quantise(rotate(x, b), OFFSET), calls)
                native_us = best_microseconds(lambda x=x: native_rotate_quantize(x, BLOCK, OFFSET), calls)
                exact = rotate(x.double(), hadamard(BLOCK).double()).float()
                native_codes = native_rotate_quantize(x, BLOCK, OFFSET)[0]
                codes_off = int((quantize_rows(exact, OFFSET)[0] != native_codes).sum())
                dtype_name = str(dtype).removeprefix("torch.")
                print(
                    f"{rows:>5} {width:>5} {dtype_name:>9} {torch_us:>9.0f} {native_us:>9.0f} "
                    f"{torch_us / native_us:>5.1f} {codes_off:>9}"
                )


if __name__ == "__main__":
    main()
