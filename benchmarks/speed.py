"""Speed, memory and fidelity of gemvec's precisions against sentence-transformers and llama.cpp.

Each contender runs in its own subprocess (so peak RSS is its own) on the same texts with
the same thread count, and saves its embeddings; the parent compares every embedding with
the first contender's (sentence-transformers float32 by default) and prints the tables, under
the CPU's model name and ISA flags.

    python benchmarks/make_gguf.py --model $EMBEDDINGGEMMA_DIR      # once, for llamacpp-*
    python benchmarks/speed.py --model $EMBEDDINGGEMMA_DIR [--batch-sizes 1,8,64] [--json out.json]

Workloads: short (~10 tokens, STS-B sentences), medium (~85 tokens, SciFact abstracts cut
to 60 words), long (~1,000 tokens, SciFact abstracts joined), each timed at every batch
size, plus the p50 latency of single short queries. Contenders: ``st-float32``,
``st-bfloat16``, ``gemvec-<precision>`` (``gemvec-int4@FOLDER`` loads a folder written by
``gemvec quantize`` instead of quantising at load), ``llamacpp-<q8_0|q4_0|f32>`` (GGUF files
from make_gguf.py), and sentence-transformers on its other backends: ``st-onnx-<float32|int8>``
(ONNX Runtime; int8 is its dynamically quantised export) and ``st-openvino-<float32|bfloat16|int8>``
(int8: its statically quantised export). Those need the exports and the environment that
benchmarks/peers.py describes; they run on its interpreter (``--peers-python``):

    python benchmarks/speed.py --peers-python out/peers-venv/bin/python \
        --contenders st-float32,st-onnx-float32,st-onnx-int8,st-openvino-float32,st-openvino-int8,...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peers import cpu_info, gguf_encoder, st_backend_encoder, versions

SHARED = Path(os.environ.get("GEMVEC_SHARED") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "data"
CONTENDERS = ["st-float32", "gemvec-float32", "gemvec-int8", "gemvec-int4", "llamacpp-q8_0", "llamacpp-q4_0"]
ST_BACKENDS = ("onnx", "openvino")  # st-<backend>-<precision>: run by --peers-python


def is_st_backend(contender: str) -> bool:
    return contender.startswith(tuple(f"st-{backend}-" for backend in ST_BACKENDS))


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


def run_contender(
    name: str, model: str, texts: dict[str, list[str]], out_dir: Path, options: argparse.Namespace
) -> dict:
    """Child process: load, warm up, time each workload at each batch size, save embeddings."""
    import torch

    library, precision = name.split("-", 1)
    precision, _, saved = precision.partition("@")  # gemvec-int4@FOLDER: a `gemvec quantize` output
    detail: dict = {"threads": torch.get_num_threads()}
    started = time.perf_counter()
    if is_st_backend(name):
        backend, precision = precision.split("-", 1)
        folder = options.peers_dir / f"st-{backend}"
        encode, detail = st_backend_encoder(backend, precision, folder, options.threads)
    elif library == "st":
        from sentence_transformers import SentenceTransformer

        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        st = SentenceTransformer(model, device="cpu", model_kwargs={"torch_dtype": dtype})

        def encode(kind: str, batch: list[str], batch_size: int) -> np.ndarray:
            return st.encode_document(batch, batch_size=batch_size, convert_to_tensor=True).float().numpy()
    elif library == "llamacpp":
        from gemvec.prompts import document_prompt

        gguf = options.gguf_dir / f"embeddinggemma-{precision}.gguf"
        encode = gguf_encoder(gguf, options.threads, texts, document_prompt(None))
        detail = {"threads": options.threads}
    else:
        from gemvec import Embedder

        embedder = Embedder.load(saved or model, precision)

        def encode(kind: str, batch: list[str], batch_size: int) -> np.ndarray:
            return embedder.encode_document(batch, batch_size=batch_size)

    load_seconds = time.perf_counter() - started
    if library == "gemvec":
        detail["fused_loops"] = embedder.build_fused_loops()  # steady state: timed with them built
    result: dict = {"name": name, "load_s": load_seconds, **detail, "versions": versions(), "seconds": {}}
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
    python = args.peers_python if is_st_backend(name) else sys.executable
    command = [python, __file__, "--child", name, "--out-dir", str(out_dir)]
    for option in ("model", "threads", "latency_n", "short", "medium", "long", "gguf_dir", "peers_dir"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return [*command, "--batch-sizes", ",".join(map(str, args.batch_sizes))]


def print_tables(results: list[dict], tokens: dict[str, int], batch_sizes: list[int]) -> None:
    by_name = {r["name"]: r for r in results}
    reference = "st-float32"

    def tok_s(result: dict, kind: str, batch_size: int) -> float:
        return tokens[kind] / result["seconds"][kind][str(batch_size)]

    print(f"tokens per workload: {tokens}, threads: {results[0]['threads']}")
    print(
        f"{'contender':<20} {'batch':>5} {'short tok/s':>11} {'medium tok/s':>12} {'long tok/s':>10} "
        f"{'x st-fp32 (medium)':>18}"
    )
    for batch_size in batch_sizes:
        for r in results:
            ratio = "-"
            if reference in by_name:
                peer = tok_s(by_name[reference], "medium", batch_size)
                ratio = f"{tok_s(r, 'medium', batch_size) / peer:.2f}"
            print(
                f"{r['name']:<20} {batch_size:>5} {tok_s(r, 'short', batch_size):>11.0f} "
                f"{tok_s(r, 'medium', batch_size):>12.0f} {tok_s(r, 'long', batch_size):>10.0f} {ratio:>18}"
            )
    print(
        f"\n{'contender':<20} {'p50 ms (b=1)':>12} {'peak RSS MiB':>12} {'RSS/st-fp32':>11} "
        f"{'worst cos':>9} {'short/medium/long':>17} {'load s':>6}"
    )
    for r in results:
        rss = f"{r['peak_rss_mib'] / by_name[reference]['peak_rss_mib']:.2f}" if reference in by_name else "-"
        by_workload = "/".join(f"{value:.3f}" for value in r["worst_cosine_by_workload"].values())
        print(
            f"{r['name']:<20} {r['latency_p50_ms']:>12.1f} {r['peak_rss_mib']:>12.0f} {rss:>11} "
            f"{r['worst_cosine_vs_st_fp32']:>9.4f} {by_workload:>17} {r['load_s']:>6.2f}"
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
    parser.add_argument(
        "--peers-dir", type=Path, default=Path("out/peers"), help="where `peers.py export` wrote its models"
    )
    parser.add_argument(
        "--peers-python",
        default=os.environ.get("GEMVEC_PEERS_PYTHON", sys.executable),
        help="interpreter of the environment with sentence-transformers[onnx,openvino] (see peers.py)",
    )
    parser.add_argument("--cpu-info", action="store_true", help="print the CPU model and ISA flags, and exit")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cpu = cpu_info()
    if args.cpu_info:
        print(json.dumps(cpu))
        return
    if not args.model:
        parser.error("--model (or EMBEDDINGGEMMA_DIR) is required")
    texts = workloads({"short": args.short, "medium": args.medium, "long": args.long})

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_contender(args.child, args.model, texts, args.out_dir, args)))
        return

    from gemvec.tokenizer import TextTokenizer

    print(f"cpu: {cpu['model']}, {cpu['cores']} cores, flags: {' '.join(cpu['flags']) or '-'}", flush=True)

    tokenizer = TextTokenizer.from_folder(Path(args.model))
    tokens = {kind: sum(tokenizer.count(batch)) for kind, batch in texts.items()}
    out_dir = Path(tempfile.mkdtemp(prefix="gemvec-speed-"))
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("HF_HUB_OFFLINE", "1")  # every contender loads local files
    results = []
    for name in args.contenders.split(","):
        command = child_command(name, args, out_dir)
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            code = done.returncode
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            sys.exit(f"{name} failed ({how}):\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"done {name}", file=sys.stderr, flush=True)

    for result in results:
        worst = {}
        for kind in texts:
            ours = np.load(out_dir / f"{file_stem(result['name'])}-{kind}.npy")
            reference = np.load(out_dir / f"{file_stem(results[0]['name'])}-{kind}.npy")  # st-float32
            worst[kind] = float((ours * reference).sum(axis=1).min())
        result["worst_cosine_vs_st_fp32"] = min(worst.values())
        result["worst_cosine_by_workload"] = worst
    print_tables(results, tokens, args.batch_sizes)
    if args.json:
        report = {"cpu": cpu, "tokens": tokens, "batch_sizes": args.batch_sizes, "results": results}
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
