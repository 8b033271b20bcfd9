"""Single-query latency, interleaved: gemvec's precisions and llama.cpp's GGUFs in one process.

speed.py runs each contender in turn, so on a shared machine whatever else runs during one
contender's minutes shifts its p50 by ±30%. Here every contender answers the same query one
after another, round after round, with the same thread count: a burst of load hits all of
them. Each query is a short STS-B sentence under the document prompt (as speed.py's p50);
p50 and p90 over all rounds.

    python benchmarks/make_gguf.py --model $EMBEDDINGGEMMA_DIR --out gguf      # once
    python benchmarks/query_latency.py --model $EMBEDDINGGEMMA_DIR --threads 1 \\
        --contenders gemvec-bfloat16,gemvec-int8-dynamic,llamacpp-q8_0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from peers import gguf_encoder
from speed import workloads

from gemvec import Embedder
from gemvec.precision import cpu_flags
from gemvec.prompts import document_prompt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--contenders", default="gemvec-float32,gemvec-bfloat16,gemvec-int8-dynamic,llamacpp-q8_0"
    )
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gguf-dir", type=Path, default=Path("gguf"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("cpu flags:", " ".join(sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))))
    queries = workloads({"short": args.queries, "medium": 0, "long": 0})["short"]
    encoders = {}
    for name in args.contenders.split(","):
        library, precision = name.split("-", 1)
        if library == "llamacpp":
            gguf = args.gguf_dir / f"embeddinggemma-{precision}.gguf"
            encode = gguf_encoder(gguf, args.threads, {"short": queries}, document_prompt(None))
            encoders[name] = lambda text, encode=encode: encode("short", [text], 1)
        else:
            embedder = Embedder.load(args.model, precision)
            encoders[name] = lambda text, embedder=embedder: embedder.encode_document([text], batch_size=1)
        encoders[name](queries[0])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(args.rounds):
        for text in queries:
            for name, encode in encoders.items():
                started = time.perf_counter()
                encode(text)
                seconds[name].append(time.perf_counter() - started)
    print(f"{len(queries)} queries x {args.rounds} rounds, {args.threads} thread(s), interleaved")
    print(f"{'contender':<22} {'p50 ms':>7} {'p90 ms':>7}")
    for name, values in seconds.items():
        ms = np.array(values) * 1000
        print(f"{name:<22} {np.percentile(ms, 50):>7.1f} {np.percentile(ms, 90):>7.1f}")


if __name__ == "__main__":
    main()
