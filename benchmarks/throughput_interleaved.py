"""Batch throughput against sentence-transformers, interleaved in one process.

speed.py runs each contender in its own process, one after another; on a shared machine the
load changes between them, and its ratio of gemvec bfloat16 to ST bfloat16 on medium texts at
batch 32 moved between 1.7 and 2.2 over four runs of the same code. Here every contender embeds
the same texts (speed.py's workloads, document prompt) in turn, round after round, in one
process with one thread count: a burst of load hits all of them. Best round of each, tokens
per second (speed.py's count: the texts' tokens) and the ratios to ST float32 and bfloat16.
``gemvec-<precision>-plain`` is gemvec with its compiled loops (gemvec.model.fused), native
kernel (gemvec.model.rotate_quantize) and stacked attention (gemvec.model.attention) switched
off; where it ran, ``x plain`` is their gain. ``-flash`` switches off the stacked attention only.
Batch size 1 is a stream of single
queries.

    python benchmarks/throughput_interleaved.py --model $EMBEDDINGGEMMA_DIR --threads 1 \\
        --json benchmarks/results/throughput_interleaved_1thread.json
    python benchmarks/throughput_interleaved.py --model $EMBEDDINGGEMMA_DIR --workload short --batch-size 1 \\
        --contenders gemvec-bfloat16,gemvec-bfloat16-plain
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import isa_cap

EMULATED_ISA = isa_cap.cap_from_argv()  # before torch loads oneDNN

import torch  # noqa: E402
from speed import workloads  # noqa: E402

from gemvec import Embedder  # noqa: E402
from gemvec.model.fused import FusedOp  # noqa: E402
from gemvec.model.rotate_quantize import NativeKernel  # noqa: E402
from gemvec.precision import cpu_flags  # noqa: E402
from gemvec.tokenizer import TextTokenizer  # noqa: E402

CONTENDERS = "st-float32,st-bfloat16,gemvec-bfloat16-plain,gemvec-bfloat16,gemvec-int8-dynamic"


def encoder(name: str, model: str) -> Callable[[list[str], int], object]:
    library, precision = name.split("-", 1)
    if library == "st":
        from sentence_transformers import SentenceTransformer

        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        st = SentenceTransformer(model, device="cpu", model_kwargs={"torch_dtype": dtype})
        return lambda texts, batch_size: st.encode_document(texts, batch_size=batch_size)
    fused = not precision.endswith("-plain")
    embedder = Embedder.load(model, precision.removesuffix("-plain").removesuffix("-flash"))
    if fused and not embedder.build_fused_loops():
        print(f"{name}: the compiled loops did not build or were refused; it runs the plain ops")
    if not fused or precision.endswith("-flash"):
        for layer in embedder.encoder.layers:
            layer.self_attn.rounded_scores = False  # SDPA's flash attention throughout

    def encode(texts: list[str], batch_size: int) -> object:
        FusedOp.enabled = NativeKernel.enabled = fused
        return embedder.encode_document(texts, batch_size=batch_size)

    return encode


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--contenders", default=CONTENDERS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workload", choices=["short", "medium", "long"], default="medium")
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", dest="json_path", help="write the figures to this file")
    parser.add_argument(
        isa_cap.OPTION, choices=list(isa_cap.PROFILES), help="run as on an older CPU (isa_cap.py)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = " ".join(sorted(f for f in cpu_flags() if f.startswith(("avx", "amx"))))
    print("cpu flags:", flags)
    if EMULATED_ISA:
        emulated = isa_cap.apply_after_import(EMULATED_ISA)
        flags += f" | emulating {EMULATED_ISA}: " + " ".join(sorted(emulated))
        print(f"emulating {EMULATED_ISA}:", " ".join(sorted(emulated)), "| oneDNN, ATen, inductor capped")
    texts = workloads({"short": 0, "medium": 0, "long": 0} | {args.workload: args.texts})[args.workload]
    encoders = {name: encoder(name, args.model) for name in args.contenders.split(",")}
    tokens = sum(TextTokenizer.from_folder(Path(args.model)).count(texts))
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, encode in encoders.items():
            start = time.perf_counter()
            encode(texts, args.batch_size)
            best[name] = max(best.get(name, 0.0), tokens / (time.perf_counter() - start))
    print(f"{args.workload} texts, batch {args.batch_size}, {args.threads} thread(s), best of {args.rounds}")
    print(f"{'contender':<24} {'tok/s':>7} {'x st-fp32':>9} {'x st-bf16':>9} {'x plain':>7}")
    for name, rate in best.items():
        peers = ("st-float32", "st-bfloat16", f"{name}-plain")
        fp32, bf16, plain = (rate / best[peer] if peer in best else float("nan") for peer in peers)
        print(f"{name:<24} {rate:>7.0f} {fp32:>9.2f} {bf16:>9.2f} {plain:>7.2f}")
    if args.json_path:
        record = {"cpu_flags": flags, "threads": args.threads, "workload": args.workload, "texts": args.texts}
        record |= {"tokens": tokens, "batch_size": args.batch_size, "rounds": args.rounds, "tok_s": best}
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
