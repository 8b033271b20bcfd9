"""Scale out on Ray: a collection built on 1 and 2 Ray nodes (one CPU each) against one process.

    python benchmarks/ray_scaling.py --model $EMBEDDINGGEMMA_DIR --docs 300 --batch-rows 16 \\
        --json benchmarks/results/ray_scaling.jsonl

Measured in one run, on the same documents (the first ``--docs`` SciFact abstracts, as JSON
Lines, chunked at 256 tokens), at the CPU's default compute precision:

- ``single``: ``Collection.add`` in this process, torch on one thread: one core, like one node.
- ``ray-1``, ``ray-2``: ``index_on_ray`` (what ``gemvec index --ray`` runs) on a loopback
  cluster (:mod:`gemvec.distributed.loopback`) of 1 and 2 nodes of one CPU each, one actor per
  node, ``--batch-rows`` chunks per Ray batch; the driver runs beside them, as in the tests.
- ``driver-768``, ``driver-256``: ``Collection.add`` of all 5,183 abstracts with a stand-in
  embedder (random unit vectors) at that dim: what one driver reads and chunks (plan) and
  commits per second, the ceiling of one collection however many nodes embed for it; and the
  collection's bytes per chunk (SQLite with FTS5, and the FAISS index).
- ``load``: what each actor pays once before it embeds (a fresh process importing torch and
  gemvec, loading the model, checking its fingerprint), CPU and wall seconds.
- ``summary``: Ray's overhead against ``single`` in CPU seconds per chunk, for the whole job
  and without the actors' model loads (``load`` times the nodes: the single process loaded its
  model before its clock started, as the Ray driver did); throughput against ``single``, and
  ``ray-2``'s against ``ray-1``'s.

Each row: chunks; wall seconds from the driver's model loaded to the last commit (so Ray's
actors start, load the model and check its fingerprint inside it; the single process loaded
its model before); plan seconds (reading and chunking); seconds to the first commit; CPU
seconds: this process's for ``single``; for ``ray-N`` the driver's, the model actors' and the
other Ray processes' (raylets, GCS, agents, idle workers), sampled from /proc twice a second.
``cores_used``: those CPU seconds over the wall seconds, what the machine gave the run. The
machine is shared with other jobs: wall figures move with the load (recorded with each row,
1/5/15 minutes) and with the cores the run got; CPU seconds per chunk much less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from gemvec.distributed.dataset import DEFAULT_BATCH_ROWS
from gemvec.precision import cpu_flags

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"
CHUNK_TOKENS, OVERLAP = 256, 32


class Clock:
    """A writer progress callback that times the plan (reading, chunking) and the commits."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cpu = time.process_time()
        self.planned = self.start  # when the writer starts: every document read and chunked
        self.first: float | None = None  # the first commit
        self.last: tuple[float, int] = (self.start, 0)  # (time, chunks) at the last commit

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if not done:
            self.planned = now
            return
        self.first = self.first or now
        self.last = (now, done)

    def result(self) -> dict:
        end, chunks = self.last
        return {
            "chunks": chunks,
            "wall_s": round(end - self.start, 2),
            "plan_s": round(self.planned - self.start, 2),
            "first_commit_s": round((self.first or end) - self.start, 2),
            "chunks_per_s": round(chunks / (end - self.start), 3),
            "process_cpu_s": round(time.process_time() - self.cpu, 2),
        }


class CpuSampler:
    """The CPU seconds a loopback cluster's processes use while a block runs (sampled), and the
    share of it the model actors used (the rest: raylets, GCS, agents, idle workers)."""

    def __init__(self, cluster, every: float = 0.5) -> None:
        self.cluster = cluster
        self.every = every
        self.seen: dict[int, float] = {}
        self.actors: set[int] = set()
        self.stopped = threading.Event()

    def __enter__(self) -> CpuSampler:
        self.before = self.cluster.cpu_times()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()
        self._sample()

    def seconds(self, actors: bool | None = None) -> float:
        """All of it; or only the actors' (True), or only the rest (False)."""
        return sum(
            cpu - self.before.get(pid, 0.0)
            for pid, cpu in self.seen.items()
            if actors is None or (pid in self.actors) == actors
        )

    def _run(self) -> None:
        while not self.stopped.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        for pid, cpu in self.cluster.cpu_times().items():
            self.seen[pid] = max(cpu, self.seen.get(pid, 0.0))
            if pid not in self.actors:
                with contextlib.suppress(OSError):  # Ray renames a worker once it holds the actor
                    if b"EmbedBatches" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        self.actors.add(pid)


def write_docs(folder: Path, count: int | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = DATA.read_text().splitlines()
    (folder / "corpus.jsonl").write_text("\n".join(lines[:count] if count else lines) + "\n")
    return folder


def new_collection(folder: Path, embedder, dim: int | None = None):
    from gemvec.store import Collection

    return Collection.create(folder, embedder=embedder, dim=dim, chunk_tokens=CHUNK_TOKENS, overlap=OVERLAP)


def run_single(model: str, precision: str | None, docs: Path, root: Path) -> dict:
    import torch

    from gemvec import Embedder

    torch.set_num_threads(1)
    embedder = Embedder.load(model, precision)
    clock = Clock()
    with new_collection(root / "single", embedder) as coll:
        coll.add([docs], progress=clock)
    row = clock.result()
    row["cpu_s_per_chunk"] = round(row["process_cpu_s"] / row["chunks"], 4)
    row["cores_used"] = round(row["process_cpu_s"] / row["wall_s"], 2)
    return {"run": "single", "precision": embedder.precision.value, **row}


LOAD_SCRIPT = """
import json, sys, time
cpu, wall = time.process_time(), time.perf_counter()
import torch
torch.set_num_threads(1)
from gemvec import Embedder
from gemvec.model.fingerprint import model_fingerprint
embedder = Embedder.load(sys.argv[1], sys.argv[2] or None)
model_fingerprint(embedder.folder, embedder.model_name)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"load_cpu_s": round(cpu, 2), "load_wall_s": round(wall, 2)}))
"""


def run_model_load(model: str, precision: str | None) -> dict:
    """What each Ray actor pays once before embedding: import torch and gemvec, load the model,
    check its fingerprint (a fresh process, one thread; the single run loads before its clock)."""
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, model, precision or ""],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"run": "load", **json.loads(done.stdout.strip().splitlines()[-1])}


def run_driver_ceiling(model: str, docs: Path, root: Path, dim: int) -> dict:
    from gemvec import Embedder

    rng = np.random.default_rng(0)

    def stand_in(texts: list[str], titles: list[str | None]):
        def embed(batch: list[str], _: list[str | None]) -> np.ndarray:
            vectors = rng.standard_normal((len(batch), dim)).astype(np.float32)
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

        return embed

    embedder = Embedder.load(model, "float32")
    clock = Clock()
    with new_collection(root / f"driver{dim}", embedder, dim) as coll:
        coll.add([docs], progress=clock, embed_documents=stand_in)
    row = clock.result()
    size = sum(p.stat().st_size for p in (root / f"driver{dim}").rglob("*") if p.is_file())
    committing = row["wall_s"] - row["plan_s"]
    return {
        "run": f"driver-{dim}",
        **row,
        "plan_chunks_per_s": round(row["chunks"] / row["plan_s"], 1),
        "commit_chunks_per_s": round(row["chunks"] / committing, 1),
        "bytes_per_chunk": round(size / row["chunks"]),
    }


def drive(address: str, folder: str, model: str, precision: str | None, docs: str, batch_rows: int) -> None:
    """Inside the cluster's namespace: build the collection on Ray, print the timings as JSON."""
    from gemvec import Embedder
    from gemvec.distributed import connect, index_on_ray

    connect(address)
    embedder = Embedder.load(model, precision)
    clock = Clock()
    with new_collection(Path(folder), embedder) as coll:
        _, nodes = index_on_ray(coll, [docs], progress=clock, batch_rows=batch_rows)
    row = {**clock.result(), "precision": embedder.precision.value}
    print(json.dumps({**row, "chunks_by_node": sorted(nodes.values())}))


def run_ray(nodes: int, model: str, precision: str | None, docs: Path, root: Path, batch_rows: int) -> dict:
    from gemvec.distributed.loopback import LoopbackCluster

    cluster = LoopbackCluster(Path(tempfile.mkdtemp(prefix="gvray")))
    try:
        cluster.start(nodes)
        args = ["--drive", cluster.address, str(root / f"ray{nodes}"), model, precision or "", str(docs)]
        args.append(str(batch_rows))
        with CpuSampler(cluster) as ray_cpu:
            code, out, err = cluster.finish(sys.executable, __file__, *args, timeout=3600)
        if code != 0:
            raise SystemExit(f"ray-{nodes} failed:\n{err[-3000:]}")
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
    row = json.loads(out.strip().splitlines()[-1])  # process_cpu_s: the driver's
    row["actor_cpu_s"] = round(ray_cpu.seconds(actors=True), 2)
    row["ray_other_cpu_s"] = round(ray_cpu.seconds(actors=False), 2)
    cpu = row["process_cpu_s"] + ray_cpu.seconds()
    row["cpu_s_per_chunk"] = round(cpu / row["chunks"], 4)
    row["cores_used"] = round(cpu / row["wall_s"], 2)  # what the shared machine gave the whole cluster
    return {"run": f"ray-{nodes}", "nodes": nodes, "batch_rows": batch_rows, **row}


def summary(rows: dict[str, dict]) -> dict:
    """Ray's overhead against the single process in CPU seconds per chunk (the whole job; and
    without the model loads of the actors, which the single run did before its clock) and in
    throughput; and ray-2's throughput over ray-1's."""
    single = rows["single"]
    out: dict[str, float] = {}
    for run, row in rows.items():
        if not run.startswith("ray-"):
            continue
        out[f"{run}_cpu_overhead"] = round(row["cpu_s_per_chunk"] / single["cpu_s_per_chunk"] - 1, 3)
        if "load" in rows:
            actors = row["nodes"]  # one actor a node
            cpu = row["cpu_s_per_chunk"] * row["chunks"] - actors * rows["load"]["load_cpu_s"]
            out[f"{run}_cpu_overhead_without_actor_loads"] = round(
                cpu / row["chunks"] / single["cpu_s_per_chunk"] - 1, 3
            )
        out[f"{run}_throughput_vs_single"] = round(row["chunks_per_s"] / single["chunks_per_s"], 3)
    if "ray-1" in rows and "ray-2" in rows:
        out["ray-2_throughput_vs_ray-1"] = round(
            rows["ray-2"]["chunks_per_s"] / rows["ray-1"]["chunks_per_s"], 3
        )
    return out


def write(row: dict, path: Path | None) -> None:
    print(json.dumps(row), flush=True)
    if path:
        with path.open("a") as out:
            out.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGGEMMA_DIR"))
    parser.add_argument("--precision", default=None, help="compute precision (default: this CPU's)")
    parser.add_argument("--docs", type=int, default=120, help="SciFact abstracts to index")
    parser.add_argument("--runs", default="load,single,ray-1,ray-2,driver-768,driver-256")
    parser.add_argument("--json", type=Path, help="append the rows to this JSON Lines file")
    parser.add_argument("--batch-rows", type=int, help="chunks per Ray batch (default: index_on_ray's, 64)")
    parser.add_argument(
        "--drive", nargs=6, metavar=("ADDRESS", "FOLDER", "MODEL", "PRECISION", "DOCS", "ROWS")
    )
    args = parser.parse_args()
    if args.drive:
        address, folder, model, precision, docs, rows = args.drive
        drive(address, folder, model, precision or None, docs, int(rows))
        return
    if not args.model:
        raise SystemExit("pass --model or set EMBEDDINGGEMMA_DIR")
    root = Path(tempfile.mkdtemp(prefix="ray_scaling"))
    try:
        docs = write_docs(root / "docs", args.docs)
        context = {
            "date": time.strftime("%Y-%m-%d"),
            "cpu_flags": sorted(cpu_flags() & {"avx2", "avx512_bf16", "avx512_vnni", "amx_bf16"}),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "docs": args.docs,
        }
        print(f"CPU flags: {' '.join(context['cpu_flags'])}; load {os.getloadavg()}", flush=True)
        rows = {}
        for run in args.runs.split(","):
            load = os.getloadavg()
            if run == "load":
                row = run_model_load(args.model, args.precision)
            elif run == "single":
                row = run_single(args.model, args.precision, docs, root)
            elif run.startswith("ray-"):
                nodes = int(run.split("-")[1])
                row = run_ray(
                    nodes, args.model, args.precision, docs, root, args.batch_rows or DEFAULT_BATCH_ROWS
                )
            elif run.startswith("driver-"):
                everything = write_docs(root / "all", None)
                row = run_driver_ceiling(args.model, everything, root, int(run.split("-")[1]))
            else:
                raise SystemExit(f"unknown run {run}")
            row = {**context, **row, "load_before": [round(x, 2) for x in load]}
            row["load_after"] = [round(x, 2) for x in os.getloadavg()]
            rows[run] = row
            write(row, args.json)
        if "single" in rows and any(run.startswith("ray-") for run in rows):
            write({**context, "run": "summary", **summary(rows)}, args.json)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
