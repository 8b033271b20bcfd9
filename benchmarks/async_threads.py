"""LangChain's async embedding path: asyncio's shared thread pool against the adapter's model thread.

    python benchmarks/async_threads.py --model $EMBEDDINGGEMMA_DIR [--texts 32] [--rounds 3]

Each side runs in a fresh process that loads the model on its main thread (as an application
does), runs torch there once, and then embeds the same medium texts ``--rounds`` times with
``aembed_documents``: ``langchain-default`` through ``Embeddings.aembed_documents`` of LangChain's
base class over a plain adapter that calls ``encode_document`` (the work goes to asyncio's shared
pool), ``gemvec`` through GemvecEmbeddings and its model thread (gemvec.batching). The two
sides alternate, so the shared machine's noise falls on both. Reported per side: the median wall
time of a call and how many CPUs the process kept busy during it (CPU time / wall time); on a
2-core machine the throttled libgomp of two OpenMP pools shows as well under 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ONE_SIDE = """
import asyncio, json, os, sys, time
from langchain_core.embeddings import Embeddings
from gemvec import Embedder
from gemvec.integrations.langchain import GemvecEmbeddings
side, model, n_texts, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sentence = "The committee reviewed the proposal and asked for a revised budget. "
texts = [f"Document {i}: " + sentence * 6 for i in range(n_texts)]
embedder = Embedder.load(model)
embedder.encode_document(texts[:2])  # warm up on the loading thread, as an application might
class PlainEmbeddings(Embeddings):  # no async methods of its own: LangChain's default applies
    def embed_documents(self, texts):
        return embedder.encode_document(texts).tolist()
    def embed_query(self, text):
        return embedder.encode_query(text).tolist()
embeddings = PlainEmbeddings() if side == "langchain-default" else GemvecEmbeddings(embedder)
embed = type(embeddings).aembed_documents
def cpu_seconds():
    times = os.times()
    return times.user + times.system
results = []
for _ in range(rounds):
    wall, cpu = time.perf_counter(), cpu_seconds()
    asyncio.run(embed(embeddings, texts))
    wall = time.perf_counter() - wall
    results.append({"wall_s": wall, "cpus_busy": (cpu_seconds() - cpu) / wall})
print(json.dumps(results))
"""

SIDES = ("langchain-default", "gemvec")


def run_side(side: str, model: str, texts: int, rounds: int) -> list[dict[str, float]]:
    command = [sys.executable, "-c", ONE_SIDE, side, model, str(texts), str(rounds)]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{side} failed:\n{run.stderr.strip()[-2000:]}")
    return json.loads(run.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGGEMMA_DIR"))
    parser.add_argument("--texts", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="calls per process")
    parser.add_argument("--repeats", type=int, default=2, help="processes per side, alternating")
    args = parser.parse_args()
    if not args.model:
        parser.error("give --model or set EMBEDDINGGEMMA_DIR")
    measured: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for _ in range(args.repeats):
        for side in SIDES:
            measured[side] += run_side(side, args.model, args.texts, args.rounds)
    calls = args.repeats * args.rounds
    print(f"{args.texts} medium texts a call, {calls} calls a side, {os.cpu_count()} CPUs")
    wall = {side: statistics.median(r["wall_s"] for r in measured[side]) for side in SIDES}
    print("| side | median wall (s) | CPUs busy (median) |\n|---|---|---|")
    for side in SIDES:
        busy = statistics.median(r["cpus_busy"] for r in measured[side])
        print(f"| {side} | {wall[side]:.2f} | {busy:.2f} |")
    speedup = wall["langchain-default"] / wall["gemvec"]
    print(f"\ngemvec's async path: {speedup:.2f}x the speed of LangChain's default")


if __name__ == "__main__":
    main()
