"""Batch throughput with the fused elementwise loops (gemvec.model.fused) and without, interleaved.

Each round encodes the same texts (speed.py's workloads: ``medium`` SciFact abstracts cut to
60 words, ``short`` STS-B sentences; batch size 1 is a stream of single queries) once per
configuration, one after another, so a burst of load on a shared machine hits both;
the best round of each is reported, with the ratio. The compiled loops are built before any
timing (the steady state of a long ingestion or a server).

    python benchmarks/fused_ops.py --model $EMBEDDINGGEMMA_DIR --precisions bfloat16,int8-dynamic
    python benchmarks/fused_ops.py --model $EMBEDDINGGEMMA_DIR --workload short --batch-size 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from speed import workloads

from gemvec import Embedder
from gemvec.model.fused import FusedOp
from gemvec.precision import cpu_flags


def tokens_per_second(embedder: Embedder, texts: list[str], batch_size: int, fused: bool) -> float:
    FusedOp.enabled = fused
    start = time.perf_counter()
    embedder.encode_document(texts, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return sum(embedder.count_tokens(texts)) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--precisions", default="bfloat16,int8-dynamic")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workload", choices=["short", "medium", "long"], default="medium")
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", dest="json_path", help="write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = " ".join(sorted(f for f in cpu_flags() if f.startswith(("avx", "amx"))))
    print("cpu flags:", flags)
    sizes = {"short": 0, "medium": 0, "long": 0} | {args.workload: args.texts}
    texts = workloads(sizes)[args.workload]
    embedders = {precision: Embedder.load(args.model, precision) for precision in args.precisions.split(",")}
    print("compiled loops built:", all([embedder.build_fused_loops() for embedder in embedders.values()]))
    best: dict[tuple[str, bool], float] = {}
    for _ in range(args.rounds):
        for precision, embedder in embedders.items():
            for fused in (True, False):
                rate = tokens_per_second(embedder, texts, args.batch_size, fused)
                best[precision, fused] = max(best.get((precision, fused), 0.0), rate)
    FusedOp.enabled = True
    print(f"{'precision':<14} {'fused tok/s':>11} {'plain tok/s':>11} {'ratio':>6}")
    rows = []
    for precision in embedders:
        fused, plain = best[precision, True], best[precision, False]
        print(f"{precision:<14} {fused:>11.0f} {plain:>11.0f} {fused / plain:>6.2f}")
        rows.append({"precision": precision, "fused_tok_s": fused, "plain_tok_s": plain})
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "cpu_flags": flags,
                    "threads": args.threads,
                    "batch_size": args.batch_size,
                    "texts": args.texts,
                    "rounds": args.rounds,
                    "results": rows,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
