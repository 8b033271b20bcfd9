"""Load test of `gemvec serve`: throughput and p50/p99 latency at 1, 8, 32 and 64 concurrent clients,
against offline ``encode_document`` on the same texts in the same run.

    python benchmarks/server_load.py --model $EMBEDDINGGEMMA_DIR [--texts 256] [--clients 1,8,32,64]

The server runs as a real `gemvec serve` subprocess on 127.0.0.1. Each client sends one text per
request (the hardest case for batching) in a closed loop, taking the next text from a shared list,
with the openai client's default wire format (base64). The machine is shared, so every server
round is sandwiched between two offline measurements (``encode_document``, batch 32, in this
process while the server idles; each the better of a main-thread and a worker-thread run) and
its ratio uses the mean of those two.
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
import threading
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


class Offline:
    """The same texts through ``encode_document`` in this process: the peer the server is measured against."""

    def __init__(self, model: str, precision: str | None, texts: list[str]) -> None:
        from gemvec import Embedder

        self.embedder = Embedder.load(model, precision)
        self.texts = texts
        self.embedder.encode_document(texts[:32])  # warm-up

    def texts_per_s(self) -> float:
        """The better of a run on the main thread and one on a fresh thread, as the server's worker runs.

        On this oversubscribed machine torch is much faster called from a non-main thread (its
        OpenMP team behaves differently there), so the main-thread figure alone would flatter
        the server.
        """
        return max(self._run(), self._run_in_thread())

    def _run(self) -> float:
        start = time.perf_counter()
        self.embedder.encode_document(self.texts, batch_size=32, show_progress=False)
        return len(self.texts) / (time.perf_counter() - start)

    def _run_in_thread(self) -> float:
        result: list[float] = []
        thread = threading.Thread(target=lambda: result.append(self._run()))
        thread.start()
        thread.join()
        return result[0]


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
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "server_load.json")
    args = parser.parse_args()
    if not args.model:
        raise SystemExit("pass --model or set EMBEDDINGGEMMA_DIR")
    texts = load_texts(args.texts)
    print(f"{len(texts)} texts, mean {np.mean([len(t) for t in texts]):.0f} chars; load {os.getloadavg()}")

    reference = Offline(args.model, args.precision, texts)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.model, args.precision, port)
    rows = []
    try:
        asyncio.run(load(url, texts[:64], 8))  # warm-up
        offline_before = reference.texts_per_s()
        for clients in [int(c) for c in args.clients.split(",")]:
            n0, s0 = batch_stats(url)
            row = asyncio.run(load(url, texts, clients))
            n1, s1 = batch_stats(url)
            offline_after = reference.texts_per_s()
            offline = (offline_before + offline_after) / 2
            row["mean_batch"] = round((s1 - s0) / max(n1 - n0, 1), 1)
            row["offline_texts_per_s"] = round(offline, 1)
            row["vs_offline"] = round(row["texts_per_s"] / offline, 2)
            rows.append(row)
            print(row, flush=True)
            offline_before = offline_after
    finally:
        proc.terminate()
        proc.wait(60)

    print("\n| clients | server texts/s | offline texts/s | ratio | p50 ms | p99 ms | mean batch | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['clients']} | {r['texts_per_s']} | {r['offline_texts_per_s']} | {r['vs_offline']:.2f} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['mean_batch']} | {r['errors']} |"
        )
    print(f"\nload average after: {os.getloadavg()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "texts": len(texts), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
