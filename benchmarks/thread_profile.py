"""Where one thread's time goes, and what a second thread buys, per operator (torch.profiler).

Embeds speed.py's medium texts at batch 32 with the compiled loops built, switching the thread
count between passes in the given order, and prints each operator's self time at one and at two
threads (best pass of each) and their ratio. The order matters: a process that ran at one
thread first got no speed-up from a second one in its linear layers (BENCHMARKS.md).

    python benchmarks/thread_profile.py --model $EMBEDDINGGEMMA_DIR --order 2,1,2,1
"""

from __future__ import annotations

import argparse
import time

import torch
from speed import workloads
from torch.profiler import profile

from gemvec import Embedder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--precision", default="bfloat16")
    parser.add_argument("--order", default="2,1,2,1", help="thread counts of the passes, in turn")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    texts = workloads({"short": 0, "medium": 64, "long": 0})["medium"]
    embedder = Embedder.load(args.model, args.precision)
    embedder.build_fused_loops()
    passes: dict[int, list[dict[str, float]]] = {}
    for threads in (int(t) for t in args.order.split(",")):
        torch.set_num_threads(threads)
        embedder.encode_document(texts, batch_size=32)  # warm-up at this count
        started = time.perf_counter()
        with profile() as profiled:
            embedder.encode_document(texts, batch_size=32)
        print(f"{threads} thread(s): {time.perf_counter() - started:.2f} s (profiled)", flush=True)
        passes.setdefault(threads, []).append(
            {e.key: e.self_cpu_time_total / 1e6 for e in profiled.key_averages()}
        )
    one, two = passes.get(1, []), passes.get(2, [])
    if not one or not two:
        return
    best = {n: {k: min(p.get(k, 0.0) for p in runs) for k in runs[0]} for n, runs in ((1, one), (2, two))}
    for key in sorted(best[1], key=best[1].get, reverse=True)[: args.top]:
        a, b = best[1][key], best[2].get(key, 0.0)
        ratio = f"{a / b:.2f}x" if b else "-"
        print(f"{key[:56]:<56} 1 thread {a:7.3f} s   2 threads {b:7.3f} s   {ratio}")


if __name__ == "__main__":
    main()
