"""Load test of `gemvec serve`: throughput and p50/p99 latency at 1, 8, 32 and 64 concurrent clients,
against offline ``encode_document`` on the same texts in the same run.

    python benchmarks/server_load.py --model $EMBEDDINGGEMMA_DIR [--texts 128] [--rounds 2] [--clients 1,8,32]

The server runs as a real `gemvec serve` subprocess on 127.0.0.1. Each client sends one text per
request (the hardest case for batching) in a closed loop, taking the next text from a shared list,
with the openai client's default wire format (base64). The machine is shared, so for each client
count, offline rounds (``encode_document``, batch 32, on this process's main thread while the
server idles) and server rounds alternate on the same texts, and each side's throughput is its
texts over its time. Alongside: how busy the model thread was, and how the machine's CPU time
was shared between the server's threads, the load generator, and idle or stolen time.
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
from collections import Counter
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


def start_server(model: str, precision: str | None, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gemvec", "serve", "--model", model, "--port", str(port), *extra]
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


async def load(url: str, texts: list[str], clients: int) -> tuple[float, list[float], int, float]:
    """Closed loop: `clients` tasks, each sending the next text as soon as its last answer arrived.

    Returns the wall time, the latency of every request, the number of failed requests and the
    CPU seconds the clients themselves used (on a small machine they compete with the server).
    """
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

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - start, latencies, errors, time.process_time() - cpu


class Offline:
    """The same texts through ``encode_document`` (batch 32) in this process: the server's peer.

    Timed on the main thread, the only thread here that runs torch, as in a user's script: a
    second thread running torch would slow both down (see ``gemvec.model.openmp``).
    """

    def __init__(self, model: str, precision: str | None) -> None:
        from gemvec import Embedder

        self.embedder = Embedder.load(model, precision)
        self.cpu_share: list[float] = []  # of the machine, per timed call
        self.seconds(["warm-up"] * 8)

    def seconds(self, texts: list[str]) -> float:
        start, cpu = time.perf_counter(), time.process_time()
        self.embedder.encode_document(texts, batch_size=32, show_progress=False)
        wall = time.perf_counter() - start
        self.cpu_share.append((time.process_time() - cpu) / (wall * (os.cpu_count() or 1)))
        return wall


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) so far of each thread of process ``pid``; empty without /proc."""
    seconds: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def machine_cpu_seconds() -> np.ndarray:
    """The whole machine's CPU seconds so far as (busy, idle, stolen by the hypervisor), from
    /proc/stat; zeros without it."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return np.zeros(3)
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    busy = user + nice + system + irq + softirq
    return np.array([busy, idle + iowait, steal], dtype=float) / os.sysconf("SC_CLK_TCK")


def measure(url: str, pid: int, offline: Offline, texts: list[str], clients: int, rounds: int) -> dict:
    """Alternate offline and server rounds on the same texts, so both see the same (shared) machine."""
    n0, s0, busy0 = batch_stats(url)
    server_s = offline_s = client_cpu_s = 0.0
    latencies: list[float] = []
    errors = 0
    threads: Counter[int] = Counter()  # server CPU seconds per thread, during server rounds only
    machine = np.zeros(3)  # busy, idle, stolen CPU seconds of the machine during server rounds
    offline.cpu_share.clear()
    for _ in range(rounds):
        offline_s += offline.seconds(texts)
        before, machine_before = thread_cpu_seconds(pid), machine_cpu_seconds()
        wall, lat, err, cpu = asyncio.run(load(url, texts, clients))
        threads.update({t: s - before.get(t, 0.0) for t, s in thread_cpu_seconds(pid).items()})
        machine += machine_cpu_seconds() - machine_before
        server_s += wall
        client_cpu_s += cpu
        latencies += lat
        errors += err
    n1, s1, busy1 = batch_stats(url)
    ms = np.array(latencies) * 1000
    total = rounds * len(texts)
    capacity = server_s * (os.cpu_count() or 1)  # CPU seconds the machine had during server rounds
    busiest = sorted(threads.values(), reverse=True)
    server, peer = total / server_s, total / offline_s
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "texts_per_s": round(server, 2),
        "offline_texts_per_s": round(peer, 2),
        "vs_offline": round(server / peer, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "mean_batch": round((s1 - s0) / max(n1 - n0, 1), 1),
        "model_busy_share": round((busy1 - busy0) / server_s, 2),  # model thread embedding / wall
        # shares of the machine's CPU while the server ran: the load generator's,
        "client_cpu_share": round(client_cpu_s / capacity, 2),
        # the server's busiest threads' (the model's compute threads lead) and the rest's
        "server_thread_shares": [round(s / capacity, 3) for s in busiest[:4]],
        "server_other_threads_share": round(sum(busiest[4:]) / capacity, 3),
        # the machine's CPU time during server rounds: busy (every process), idle, stolen
        "machine_shares": [round(float(v), 3) for v in machine / max(machine.sum(), 1e-9)],
        # the offline process's share of the machine while it encoded (it has the same 2 threads)
        "offline_cpu_share": round(float(np.median(offline.cpu_share)), 3),
    }


def batch_stats(url: str) -> tuple[float, float, float]:
    text = httpx.get(url + "/metrics").text

    def value(name: str) -> float:
        return float(re.search(rf"^{name} (\S+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]

    return (
        value("gemvec_batch_size_count"),
        value("gemvec_batch_size_sum"),
        value("gemvec_model_busy_seconds_total"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=os.environ.get("EMBEDDINGGEMMA_DIR") or os.environ.get("GEMVEC_MODEL")
    )
    parser.add_argument("--precision", default=None)
    parser.add_argument("--texts", type=int, default=128, help="texts per round")
    parser.add_argument("--rounds", type=int, default=2, help="offline/server round pairs per level")
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--batch-wait-ms", type=float, default=None, help="passed to gemvec serve")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "server_load.json")
    args = parser.parse_args()
    if not args.model:
        raise SystemExit("pass --model or set EMBEDDINGGEMMA_DIR")
    texts = load_texts(args.texts)
    print(f"{len(texts)} texts, mean {np.mean([len(t) for t in texts]):.0f} chars; load {os.getloadavg()}")

    offline = Offline(args.model, args.precision)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = ["--batch-wait-ms", str(args.batch_wait_ms)] if args.batch_wait_ms is not None else []
    proc = start_server(args.model, args.precision, port, extra)
    rows = []
    try:
        asyncio.run(load(url, texts[:64], 8))  # warm-up
        for clients in [int(c) for c in args.clients.split(",")]:
            rows.append(measure(url, proc.pid, offline, texts, clients, args.rounds))
            print(rows[-1], flush=True)
    finally:
        proc.terminate()
        proc.wait(60)

    columns = ["clients", "texts_per_s", "offline_texts_per_s", "vs_offline"]
    columns += ["p50_ms", "p99_ms", "mean_batch", "errors"]
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---:|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in columns) + " |")
    print(f"\nload average after: {os.getloadavg()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"model": args.model, "texts": len(texts), "rounds": args.rounds, "rows": rows}
    args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
