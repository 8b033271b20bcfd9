"""Speed, memory and fidelity of gemvec's precisions against sentence-transformers and llama.cpp.

Each contender runs in its own subprocess (so peak RSS is its own) on the same texts with
the same thread count, and saves its embeddings; the parent compares every embedding with
the first contender's (sentence-transformers float32 by default) and prints the tables.

    python benchmarks/make_gguf.py --model $EMBEDDINGGEMMA_DIR      # once, for llamacpp-*
    python benchmarks/speed.py --model $EMBEDDINGGEMMA_DIR [--batch-sizes 1,8,64] [--json out.json]

Workloads: short (~10 tokens, STS-B sentences), medium (~85 tokens, SciFact abstracts cut
to 60 words), long (~1,000 tokens, SciFact abstracts joined), each timed at every batch
size, plus the p50 latency of single short queries. Contenders: ``st-float32``,
``st-bfloat16``, ``gemvec-<precision>`` (``gemvec-int4@FOLDER`` loads a folder written by
``gemvec quantize`` instead of quantising at load), ``llamacpp-<q8_0|q4_0|f32>`` (GGUF files
from make_gguf.py).
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

from gemvec.errors import require
from gemvec.prompts import document_prompt

SHARED = Path(os.environ.get("GEMVEC_SHARED") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "data"
CONTENDERS = ["st-float32", "gemvec-float32", "gemvec-int8", "gemvec-int4", "llamacpp-q8_0", "llamacpp-q4_0"]
DOCUMENT_PROMPT = document_prompt(None)


def file_stem(contender: str) -> str:
    return contender.replace("/", "_")


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


def gguf_encoder(path: Path, threads: int, texts: dict[str, list[str]]):
    """llama.cpp through llama-cpp-python, with a context sized for each workload in turn.

    llama.cpp packs every text of a call into one micro-batch and attends across all of it
    under a mask, so its micro-batch must hold the longest text but costs more the larger it
    is: each workload gets the smallest power of two (at least 256) that fits its texts, the
    fastest setting found on medium texts (Q8_0: 456 tokens/s at 256, 190 at 2,048). One
    context lives at a time, so peak RSS is that of a single llama.cpp model.
    """
    llama_cpp = require("llama_cpp", "llm", "The llama.cpp contenders")

    if not path.is_file():
        sys.exit(f"{path} is missing: build it with `python benchmarks/make_gguf.py --model MODEL`")
    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    sizes = {}
    for kind, batch in texts.items():
        longest = 2 + max(len(vocab.tokenize((DOCUMENT_PROMPT + text).encode())) for text in batch)
        sizes[kind] = max(256, 1 << (longest - 1).bit_length())
    vocab.close()
    loaded: list[tuple[int, llama_cpp.Llama]] = []  # (micro-batch size, context): one at a time

    def context(kind: str) -> llama_cpp.Llama:
        size = sizes[kind]
        if not loaded or loaded[0][0] != size:
            if loaded:
                loaded.pop()[1].close()
            llm = llama_cpp.Llama(
                str(path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=size,
                n_batch=size,
                n_ubatch=size,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
            loaded.append((size, llm))
        return loaded[0][1]

    def encode(kind: str, batch: list[str], batch_size: int) -> np.ndarray:
        llm = context(kind)
        vectors = []
        for i in range(0, len(batch), batch_size):
            chunk = [DOCUMENT_PROMPT + text for text in batch[i : i + batch_size]]
            vectors.extend(llm.embed(chunk, normalize=True))
        return np.asarray(vectors, dtype=np.float32)

    return encode


def run_contender(
    name: str, model: str, texts: dict[str, list[str]], out_dir: Path, options: argparse.Namespace
) -> dict:
    """Child process: load, warm up, time each workload at each batch size, save embeddings."""
    import torch

    library, precision = name.split("-", 1)
    precision, _, saved = precision.partition("@")  # gemvec-int4@FOLDER: a `gemvec quantize` output
    started = time.perf_counter()
    if library == "st":
        from sentence_transformers import SentenceTransformer

        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        st = SentenceTransformer(model, device="cpu", model_kwargs={"torch_dtype": dtype})

        def encode(kind: str, batch: list[str], batch_size: int) -> np.ndarray:
            return st.encode_document(batch, batch_size=batch_size, convert_to_tensor=True).float().numpy()
    elif library == "llamacpp":
        gguf = options.gguf_dir / f"embeddinggemma-{precision}.gguf"
        encode = gguf_encoder(gguf, options.threads, texts)
    else:
        from gemvec import Embedder

        embedder = Embedder.load(saved or model, precision)

        def encode(kind: str, batch: list[str], batch_size: int) -> np.ndarray:
            return embedder.encode_document(batch, batch_size=batch_size)

    load_seconds = time.perf_counter() - started
    result: dict = {"name": name, "load_s": load_seconds, "threads": torch.get_num_threads(), "seconds": {}}
    encode("short", texts["short"][:2], 2)  # warm-up
    latencies = []
    for text in texts["short"][: options.latency_n]:
        started = time.perf_counter()
        encode("short", [text], 1)
        latencies.append(time.perf_counter() - started)
    result["latency_p50_ms"] = float(np.percentile(latencies, 50) * 1000)
    for kind, batch in texts.items():
        encode(kind, batch[:2], 2)  # warm-up for this workload's shapes
        result["seconds"][kind] = {}
        for batch_size in options.batch_sizes:
            started = time.perf_counter()
            vectors = encode(kind, batch, batch_size)
            result["seconds"][kind][str(batch_size)] = time.perf_counter() - started
        np.save(out_dir / f"{file_stem(name)}-{kind}.npy", vectors)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def child_command(name: str, args: argparse.Namespace, out_dir: Path) -> list[str]:
    command = [sys.executable, __file__, "--child", name, "--out-dir", str(out_dir)]
    for option in ("model", "threads", "latency_n", "short", "medium", "long", "gguf_dir"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return [*command, "--batch-sizes", ",".join(map(str, args.batch_sizes))]


def print_tables(results: list[dict], tokens: dict[str, int], batch_sizes: list[int]) -> None:
    by_name = {r["name"]: r for r in results}
    reference = "st-float32"

    def tok_s(result: dict, kind: str, batch_size: int) -> float:
        return tokens[kind] / result["seconds"][kind][str(batch_size)]

    print(f"tokens per workload: {tokens}, threads: {results[0]['threads']}")
    print(
        f"{'contender':<16} {'batch':>5} {'short tok/s':>11} {'medium tok/s':>12} {'long tok/s':>10} "
        f"{'x st-fp32 (medium)':>18}"
    )
    for batch_size in batch_sizes:
        for r in results:
            ratio = "-"
            if reference in by_name:
                peer = tok_s(by_name[reference], "medium", batch_size)
                ratio = f"{tok_s(r, 'medium', batch_size) / peer:.2f}"
            print(
                f"{r['name']:<16} {batch_size:>5} {tok_s(r, 'short', batch_size):>11.0f} "
                f"{tok_s(r, 'medium', batch_size):>12.0f} {tok_s(r, 'long', batch_size):>10.0f} {ratio:>18}"
            )
    print(
        f"\n{'contender':<16} {'p50 ms (b=1)':>12} {'peak RSS MiB':>12} {'RSS/st-fp32':>11} "
        f"{'worst cos':>9} {'load s':>6}"
    )
    for r in results:
        rss = f"{r['peak_rss_mib'] / by_name[reference]['peak_rss_mib']:.2f}" if reference in by_name else "-"
        print(
            f"{r['name']:<16} {r['latency_p50_ms']:>12.1f} {r['peak_rss_mib']:>12.0f} {rss:>11} "
            f"{r['worst_cosine_vs_st_fp32']:>9.4f} {r['load_s']:>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGGEMMA_DIR"), required=False)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--batch-sizes", default="1,8,64", type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--short", type=int, default=64)
    parser.add_argument("--medium", type=int, default=64)
    parser.add_argument("--long", type=int, default=8)
    parser.add_argument("--latency-n", type=int, default=16)
    parser.add_argument(
        "--gguf-dir", type=Path, default=Path("gguf"), help="where make_gguf.py wrote the llama.cpp files"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.model:
        parser.error("--model (or EMBEDDINGGEMMA_DIR) is required")
    texts = workloads({"short": args.short, "medium": args.medium, "long": args.long})

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_contender(args.child, args.model, texts, args.out_dir, args)))
        return

    from gemvec.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.from_folder(Path(args.model))
    tokens = {kind: sum(tokenizer.count(batch)) for kind, batch in texts.items()}
    out_dir = Path(tempfile.mkdtemp(prefix="gemvec-speed-"))
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    results = []
    for name in args.contenders.split(","):
        command = child_command(name, args, out_dir)
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"done {name}", file=sys.stderr, flush=True)

    for result in results:
        worst = 1.0
        for kind in texts:
            ours = np.load(out_dir / f"{file_stem(result['name'])}-{kind}.npy")
            reference = np.load(out_dir / f"{file_stem(results[0]['name'])}-{kind}.npy")  # st-float32
            worst = min(worst, float((ours * reference).sum(axis=1).min()))
        result["worst_cosine_vs_st_fp32"] = worst
    print_tables(results, tokens, args.batch_sizes)
    if args.json:
        report = {"tokens": tokens, "batch_sizes": args.batch_sizes, "results": results}
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
