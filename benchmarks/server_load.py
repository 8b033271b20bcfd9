"""Load test of `gemvec serve`: throughput and p50/p99 latency at 1, 8, 32 and 64 concurrent clients,
against offline ``encode_document`` on the same texts in the same run.

    python benchmarks/server_load.py --model $EMBEDDINGGEMMA_DIR [--texts 640] [--clients 1,8,32,64]

The server runs as a real `gemvec serve` subprocess on 127.0.0.1. Each client sends one text per
request (the hardest case for batching) in a closed loop, taking the next text from a shared list,
with the openai client's default wire format (base64). Offline throughput is measured before and
after the server runs (the machine is shared, so both are shown); the ratio uses their mean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = ROOT.parent / "shared" / "data" / "banking77" / "test.jsonl"


def load_texts(n: int) -> list[str]:
    """Short real queries (Banking77 test set) when present, else synthetic sentences."""
    if BANKING77.is_file():
        texts = [json.loads(line)["text"] for line in BANKING77.read_text().splitlines() if line.strip()]
    else:
        words = ["card", "transfer", "account", "balance", "money", "refund", "payment", "fee", "limit"]
        rng = random.Random(0)
        texts = [" ".join(rng.choices(words, k=rng.randint(5, 20))) for _ in range(n)]
    random.Random(0).shuffle(texts)
    return texts[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, precision: str | None, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gemvec", "serve", "--model", model, "--port", str(port)]
    cmd += ["--log-level", "warning"] + (["--precision", precision] if precision else [])
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not come up in 300 s")


async def load(url: str, texts: list[str], clients: int) -> dict:
    """Closed loop: `clients` tasks, each sending the next text as soon as its last answer arrived."""
    latencies: list[float] = []
    errors = 0
    queue = iter(range(len(texts)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:

        async def client() -> None:
            nonlocal errors
            for i in queue:
                start = time.perf_counter()
                response = await http.post(
                    "/v1/embeddings", json={"input": texts[i], "encoding_format": "base64"}
                )
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(texts),
        "errors": errors,
        "seconds": round(wall, 2),
        "texts_per_s": round(len(texts) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def offline(model: str, precision: str | None, texts: list[str]) -> float:
    from gemvec import Embedder

    embedder = Embedder.load(model, precision)
    embedder.encode_document(texts[:32])  # warm-up
    start = time.perf_counter()
    embedder.encode_document(texts, batch_size=32, show_progress=False)
    return len(texts) / (time.perf_counter() - start)


def batch_stats(url: str) -> tuple[float, float]:
    text = httpx.get(url + "/metrics").text

    def value(name: str) -> float:
        return float(re.search(rf"^{name} (\S+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]

    return value("gemvec_batch_size_count"), value("gemvec_batch_size_sum")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=os.environ.get("EMBEDDINGGEMMA_DIR") or os.environ.get("GEMVEC_MODEL")
    )
    parser.add_argument("--precision", default=None)
    parser.add_argument("--texts", type=int, default=640)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "server_load.json")
    args = parser.parse_args()
    if not args.model:
        raise SystemExit("pass --model or set EMBEDDINGGEMMA_DIR")
    texts = load_texts(args.texts)
    print(f"{len(texts)} texts, mean {np.mean([len(t) for t in texts]):.0f} chars; load {os.getloadavg()}")

    before = offline(args.model, args.precision, texts)
    print(f"offline encode_document (batch 32): {before:.1f} texts/s")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.model, args.precision, port)
    rows = []
    try:
        asyncio.run(load(url, texts[:64], 8))  # warm-up
        for clients in [int(c) for c in args.clients.split(",")]:
            n0, s0 = batch_stats(url)
            row = asyncio.run(load(url, texts, clients))
            n1, s1 = batch_stats(url)
            row["mean_batch"] = round((s1 - s0) / max(n1 - n0, 1), 1)
            rows.append(row)
            print(row, flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    after = offline(args.model, args.precision, texts)
    print(f"offline encode_document again: {after:.1f} texts/s")
    reference = (before + after) / 2
    for row in rows:
        row["vs_offline"] = round(row["texts_per_s"] / reference, 2)

    print("\n| clients | texts/s | vs offline | p50 ms | p99 ms | mean batch | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['clients']} | {r['texts_per_s']} | {r['vs_offline']:.2f} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['mean_batch']} | {r['errors']} |"
        )
    print(f"\noffline: {before:.1f} texts/s before, {after:.1f} after (mean {reference:.1f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"offline_before": before, "offline_after": after, "texts": len(texts), "rows": rows}, indent=2
        )
    )


if __name__ == "__main__":
    main()
