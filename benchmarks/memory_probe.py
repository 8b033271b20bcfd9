"""Where gemvec's memory goes: RSS and peak RSS after import, load and each speed.py workload.

    python benchmarks/memory_probe.py --model FOLDER --precision int4 [--max-batch-tokens 4096]
    MALLOC_MMAP_THRESHOLD_=1048576 python benchmarks/memory_probe.py ...   # glibc: mmap big blocks

FOLDER may be a checkpoint or a folder written by ``gemvec quantize``. Each workload (those of
benchmarks/speed.py) is encoded at batch 64; the seconds column is that step's wall time.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def report(step: str, started: float) -> float:
    status = Path("/proc/self/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0]) // 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    now = time.perf_counter()
    print(f"{step:<8} {now - started:>6.1f} s   RSS {rss:>5} MiB   peak {peak:>5} MiB", flush=True)
    return now


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--precision", default=None)
    parser.add_argument(
        "--max-batch-tokens",
        type=int,
        default=None,
        help="padded tokens per forward pass (default: gemvec.embedder.DEFAULT_MAX_BATCH_TOKENS)",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    started = report("torch", started)
    from speed import workloads

    import gemvec.embedder
    from gemvec import Embedder

    started = report("gemvec", started)
    embedder = Embedder.load(args.model, args.precision)
    if args.max_batch_tokens:
        gemvec.embedder.DEFAULT_MAX_BATCH_TOKENS = args.max_batch_tokens
    started = report("load", started)
    for kind, texts in workloads({"short": 64, "medium": 64, "long": 8}).items():
        embedder.encode_document(texts, batch_size=64)
        started = report(kind, started)


if __name__ == "__main__":
    main()
