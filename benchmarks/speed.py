"""Speed, memory and fidelity of gemvec's precisions against sentence-transformers, in one run.

Each contender runs in its own subprocess (so peak RSS is its own) on the same texts with
the same thread count, and saves its embeddings; the parent compares every embedding with
sentence-transformers float32 and prints one table.

    python benchmarks/speed.py --model $EMBEDDINGGEMMA_DIR [--threads 2] [--json out.json]

Workloads: short (~15 tokens, STS-B sentences), medium (~85 tokens, SciFact abstracts cut
to 60 words), long (~1,000 tokens, SciFact abstracts joined); throughput at batch 32 and
single-text latency (batch 1) for queries.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONTENDERS = ["st-float32", "st-bfloat16", "gemvec-float32", "gemvec-bfloat16", "gemvec-int8", "gemvec-int4"]


def workloads(sizes: dict[str, int]) -> dict[str, list[str]]:
    corpus = (DATA / "scifact/corpus.jsonl").read_text(encoding="utf-8").splitlines()
    abstracts = [json.loads(line)["text"] for line in corpus]
    sts = (DATA / "stsb/en.test.tsv").read_text(encoding="utf-8").splitlines()
    sentences = [line.split("\t")[0] for line in sts[1:]]
    long_texts = [" ".join(abstracts[i : i + 4]) for i in range(0, 4 * sizes["long"], 4)]
    return {
        "short": sentences[: sizes["short"]],
        "medium": [" ".join(text.split()[:60]) for text in abstracts[: sizes["medium"]]],
        "long": [" ".join(text.split()[:700]) for text in long_texts],
    }


def run_contender(name: str, model: str, texts: dict[str, list[str]], out_dir: Path, latency_n: int) -> dict:
    """Child process: load, warm up, time each workload, save embeddings."""
    import torch

    library, precision = name.split("-", 1)
    started = time.perf_counter()
    if library == "st":
        from sentence_transformers import SentenceTransformer

        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        st = SentenceTransformer(model, device="cpu", model_kwargs={"torch_dtype": dtype})

        def encode(batch: list[str], batch_size: int) -> np.ndarray:
            return st.encode_document(batch, batch_size=batch_size, convert_to_tensor=True).float().numpy()
    else:
        from gemvec import Embedder

        embedder = Embedder.load(model, precision)

        def encode(batch: list[str], batch_size: int) -> np.ndarray:
            return embedder.encode_document(batch, batch_size=batch_size)

    load_seconds = time.perf_counter() - started
    result: dict = {"name": name, "load_s": load_seconds, "threads": torch.get_num_threads()}
    encode(texts["short"][:4], 4)  # warm-up
    for kind, batch in texts.items():
        started = time.perf_counter()
        vectors = encode(batch, 32)
        result[f"{kind}_s"] = time.perf_counter() - started
        np.save(out_dir / f"{name}-{kind}.npy", vectors)
    latencies = []
    for text in texts["short"][:latency_n]:
        started = time.perf_counter()
        encode([text], 1)
        latencies.append(time.perf_counter() - started)
    result["latency_p50_ms"] = float(np.percentile(latencies, 50) * 1000)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGGEMMA_DIR"), required=False)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--short", type=int, default=64)
    parser.add_argument("--medium", type=int, default=64)
    parser.add_argument("--long", type=int, default=8)
    parser.add_argument("--latency-n", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.model:
        parser.error("--model (or EMBEDDINGGEMMA_DIR) is required")
    sizes = {"short": args.short, "medium": args.medium, "long": args.long}
    texts = workloads(sizes)

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_contender(args.child, args.model, texts, args.out_dir, args.latency_n)))
        return

    from gemvec.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.from_folder(Path(args.model))
    tokens = {kind: sum(tokenizer.count(batch)) for kind, batch in texts.items()}
    out_dir = Path(tempfile.mkdtemp(prefix="gemvec-speed-"))
    results = []
    for name in args.contenders.split(","):
        command = [
            sys.executable,
            __file__,
            "--child",
            name,
            "--out-dir",
            str(out_dir),
            "--model",
            args.model,
            "--threads",
            str(args.threads),
            "--latency-n",
            str(args.latency_n),
            "--short",
            str(args.short),
            "--medium",
            str(args.medium),
            "--long",
            str(args.long),
        ]
        env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"done {name}", file=sys.stderr, flush=True)

    reference = "st-float32"
    for result in results:
        worst = 1.0
        for kind in texts:
            ours = np.load(out_dir / f"{result['name']}-{kind}.npy")
            ref = np.load(out_dir / f"{reference}-{kind}.npy")
            worst = min(worst, float((ours * ref).sum(axis=1).min()))
            result[f"{kind}_tok_s"] = tokens[kind] / result[f"{kind}_s"]
        result["worst_cosine_vs_st_fp32"] = worst
    by_name = {r["name"]: r for r in results}
    header = (
        f"{'contender':<16} {'short tok/s':>11} {'medium tok/s':>12} {'long tok/s':>10} "
        f"{'x st-fp32':>9} {'x st-bf16':>9} {'p50 ms (b=1)':>12} {'peak RSS MiB':>12} {'RSS/st-fp32':>11} "
        f"{'worst cos':>9} {'load s':>6}"
    )
    print(f"tokens: {tokens}, threads: {args.threads}")
    print(header)
    for r in results:

        def ratio(peer: str, r: dict = r) -> str:
            return f"{r['medium_tok_s'] / by_name[peer]['medium_tok_s']:.2f}" if peer in by_name else "-"

        rss = f"{r['peak_rss_mib'] / by_name[reference]['peak_rss_mib']:.2f}" if reference in by_name else "-"
        print(
            f"{r['name']:<16} {r['short_tok_s']:>11.0f} {r['medium_tok_s']:>12.0f} {r['long_tok_s']:>10.0f} "
            f"{ratio('st-float32'):>9} {ratio('st-bfloat16'):>9} {r['latency_p50_ms']:>12.1f} "
            f"{r['peak_rss_mib']:>12.0f} {rss:>11} {r['worst_cosine_vs_st_fp32']:>9.4f} {r['load_s']:>6.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"tokens": tokens, "results": results}, indent=2))


if __name__ == "__main__":
    main()
