"""How close each contender of a speed.py run comes to the machine's matmul peak (issue 19).

Achieved rate = tokens/s (one workload, one batch size) x the encoder's matmul FLOPs per token
(2 x N x K summed over the 96 linear weights, 203 MFLOP; attention's scores add ~3% on medium
texts and are left out, so the fractions are slight underestimates). Peak = the fastest rate
``matmul_kernels.py`` measured, with the same thread count, for the kernel class of that
contender's precision: float32, bfloat16, or int8 (oneDNN's int8 linear: the int8 peak for
every int8 contender, ours or a peer's).

    python benchmarks/matmul_kernels.py --threads 1 --sizes 16,512,2048 --json out/peaks.json
    python benchmarks/speed.py ... --threads 1 --json benchmarks/results/speed_peers.json
    python benchmarks/peak_fraction.py benchmarks/results/speed_peers.json out/peaks.json [--batch 32]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matmul_kernels import LAYERS, SHAPES

FLOPS_PER_TOKEN = 2 * LAYERS * sum(n * k for n, k in SHAPES)
INT8 = ("int8", "q8_0", "q4_0")


def kernel_class(contender: str) -> str:
    """The matmul_kernels.py kernel whose peak bounds ``contender``."""
    precision = contender.split("@")[0].rsplit("-", 1)[-1]
    if contender.endswith("int8-dynamic") or precision in INT8:
        return "onednn int8"
    return "bfloat16" if precision == "bfloat16" else "float32"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("speed", type=Path, help="speed.py --json output")
    parser.add_argument("peaks", type=Path, help="matmul_kernels.py --json output")
    parser.add_argument("--workload", default="medium")
    parser.add_argument("--batch", default="32")
    args = parser.parse_args()
    speed = json.loads(args.speed.read_text())
    peaks = json.loads(args.peaks.read_text())
    threads = speed["results"][0]["threads"]
    if peaks["threads"] != threads:
        parser.error(f"the peaks were measured with {peaks['threads']} threads, the speed run with {threads}")
    tokens = speed["tokens"][args.workload]
    mflop = FLOPS_PER_TOKEN / 1e6
    print(f"{args.workload} texts, batch {args.batch}, {threads} thread(s), {mflop:.0f} MFLOP/token")
    print(f"{'contender':<22} {'tok/s':>7} {'GFLOP/s':>8} {'peak kernel':>12} {'peak':>6} {'of peak':>7}")
    for result in speed["results"]:
        tok_s = tokens / result["seconds"][args.workload][args.batch]
        achieved = tok_s * FLOPS_PER_TOKEN / 1e9
        kernel = kernel_class(result["name"])
        peak = max(peaks["gflops"][kernel].values())
        print(
            f"{result['name']:<22} {tok_s:>7.0f} {achieved:>8.1f} {kernel:>12} {peak:>6.0f} "
            f"{achieved / peak:>7.0%}"
        )


if __name__ == "__main__":
    main()
