"""gemvec on a real Ray cluster: two nodes of one CPU each, on 127.0.0.1 only.

The nodes run in a private network namespace that holds nothing but loopback
(:class:`gemvec.distributed.loopback.LoopbackCluster`: it needs root, ``unshare``, ``nsenter`` and
``ip``; otherwise these tests are skipped), started here and stopped by process id. A driver is a
process in that namespace (the CLI, or a script); the test reads what it wrote.

Checked against the single-process path on the same documents (the tiny random model): the same
chunk ids, cosine >= 0.9999 per vector, the same top 10 for 50 queries, work done on both nodes;
and, after a SIGKILL of one node's model actor mid-job or of the driver itself, a re-run (if
needed) that ends with exactly the chunks of the single-process path, none twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from test_store import consistent

from gemvec import Embedder
from gemvec.distributed.loopback import LoopbackCluster, unavailable
from gemvec.store import Collection

pytestmark = pytest.mark.slow

ADDRESS = "127.0.0.1:6379"  # LoopbackCluster's; free, the namespace being private
CHUNK_TOKENS, OVERLAP = 48, 8
WORDS = ["fox", "dog", "planet", "mars", "venus", "quick", "brown", "lazy", "jumps", "over", "the", "red"]
CHUNKS_SQL = (
    "SELECT c.id, d.source, c.position, c.vector FROM chunks c JOIN documents d ON d.id = c.document_id "
    "ORDER BY c.id"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    # Unix socket paths must stay short: a temp dir of its own, not pytest's deep one.
    root = Path(tempfile.mkdtemp(prefix="gvray"))
    nodes = LoopbackCluster(root)
    try:
        nodes.start(2)
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 Markdown files of 2 to 65 chunks: about 3,000 chunks of at most 48 tokens."""
    folder = tmp_path_factory.mktemp("ray_docs")
    rng = np.random.default_rng(7)
    for i in range(100):
        paragraphs = [
            " ".join(rng.choice(WORDS, size=int(rng.integers(8, 30)))) + "."
            for _ in range(rng.integers(1, 40))
        ]
        (folder / f"doc{i:03d}.md").write_text(f"# Note {i}\n\n" + "\n\n".join(paragraphs))
    return folder


def new_collection(folder: Path, embedder: Embedder) -> Path:
    Collection.create(folder, embedder=embedder, chunk_tokens=CHUNK_TOKENS, overlap=OVERLAP).close()
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, docs: Path, tiny_embedder: Embedder) -> Path:
    """The collection the single-process path builds from ``docs``."""
    folder = new_collection(tmp_path_factory.mktemp("single") / "c", tiny_embedder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as each node has: a busy machine slows two OpenMP threads down
    try:
        with Collection.open(folder, embedder=tiny_embedder) as coll:
            coll.add([docs])
    finally:
        torch.set_num_threads(threads)
    return folder


def rows(folder: Path, embedder: Embedder) -> tuple[list[tuple], np.ndarray]:
    with Collection.open(folder, embedder=embedder) as coll:
        found = coll.conn.execute(CHUNKS_SQL).fetchall()
        consistent(coll)
    return [r[:3] for r in found], np.stack([np.frombuffer(r[3], np.float32) for r in found])


def assert_same_as_reference(folder: Path, reference: Path, embedder: Embedder) -> None:
    """Exactly the reference's chunks (ids, documents, positions), none twice, the same vectors."""
    got, vectors = rows(folder, embedder)
    expected, reference_vectors = rows(reference, embedder)
    assert len(got) == len(set(got)) == len({(source, position) for _, source, position in got})
    assert got == expected
    assert float(np.min(np.sum(vectors * reference_vectors, axis=1))) >= 0.9999


def test_index_on_two_nodes_equals_the_single_process_path(
    cluster: LoopbackCluster, docs: Path, reference: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "c"
    args = ["index", str(docs), "-c", str(target), "-m", str(tiny_model_dir)]
    args += [
        "--chunk-tokens",
        str(CHUNK_TOKENS),
        "--overlap",
        str(OVERLAP),
        "--ray",
        "--ray-address",
        ADDRESS,
    ]
    code, _, err = cluster.finish(sys.executable, "-m", "gemvec", *args)
    assert code == 0, err[-3000:]

    embedder = Embedder.load(tiny_model_dir)
    assert_same_as_reference(target, reference, embedder)
    chunks = len(rows(reference, embedder)[0])
    assert chunks > 2000
    spread = next(line for line in err.splitlines() if line.startswith("embedded on"))
    counts = [int(part.split()[0]) for part in spread.split(": ", 1)[1].split(", ")]
    assert spread.startswith("embedded on 2 Ray node(s)") and min(counts) > 0 and sum(counts) == chunks

    rng = np.random.default_rng(1)
    queries = [" ".join(rng.choice(WORDS, size=4)) for _ in range(50)]
    with (
        Collection.open(target, embedder=embedder) as built,
        Collection.open(reference, embedder=embedder) as single,
    ):
        for query in queries:
            top = [hit.chunk_id for hit in built.search(query, k=10, mode="dense")]
            assert top == [hit.chunk_id for hit in single.search(query, k=10, mode="dense")], query


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_embed_files_on_two_nodes(
    cluster: LoopbackCluster, tiny_model_dir: Path, tmp_path: Path, fmt: str
) -> None:
    # Parquet: Ray 2.60's default Parquet reader lists files in a task that reserves a CPU, which
    # the actors never free; embed_files reads Parquet otherwise (this used to wait forever).
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(3)
    records = [
        {
            "id": f"r{i}",
            "text": " ".join(rng.choice(WORDS, size=int(rng.integers(3, 60)))),
            "title": f"T{i % 7}",
        }
        for i in range(600)
    ]
    for part in range(3):
        rows = records[part * 200 : (part + 1) * 200]
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in" / f"part{part}.parquet")
        else:
            (tmp_path / "in" / f"part{part}.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    args = ["embed", "--ray", "--ray-address", ADDRESS, "-m", str(tiny_model_dir), "-d", "32"]
    args += ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    code, _, err = cluster.finish(sys.executable, "-m", "gemvec", *args, timeout=300)
    assert code == 0, err[-3000:]
    assert "wrote 600 vectors" in err

    table = pq.read_table(tmp_path / "out")
    assert table.column_names == ["id", "embedding"]
    got = dict(zip(table.column("id").to_pylist(), table.column("embedding").to_pylist(), strict=True))
    assert sorted(got) == sorted(r["id"] for r in records)
    with pytest.warns(UserWarning, match="dim=32"):
        expected = Embedder.load(tiny_model_dir).encode_document(
            [r["text"] for r in records], titles=[r["title"] for r in records], dim=32
        )
    vectors = np.asarray([got[r["id"]] for r in records], dtype=np.float32)
    assert float(np.min(np.sum(vectors * expected, axis=1))) >= 0.9999


DRIVER = """
import json, sys, time
from gemvec import Embedder
from gemvec.distributed.loopback import LoopbackCluster, unavailable
from gemvec.distributed import connect, index_on_ray
from gemvec.store import Collection

address, folder, model, docs, pause = sys.argv[1:6]
connect(address)
coll = Collection.open(folder, embedder=Embedder.load(model))

def progress(done, total):
    print(f"committed {done} of {total}", flush=True)
    time.sleep(float(pause))  # a slow writer: the faults land mid-job

report, nodes = index_on_ray(coll, [docs], progress=progress)
print("finished", json.dumps({"chunks": report.chunks, "nodes": len(nodes)}), flush=True)
"""


@contextlib.contextmanager
def start_driver(
    cluster: LoopbackCluster, folder: Path, model: Path, docs: Path, pause: float
) -> Iterator[subprocess.Popen]:
    """The driver script, its stderr in a file (Ray's logs could fill a pipe nobody reads mid-job)."""
    args = [ADDRESS, str(folder), str(model), str(docs), str(pause)]
    with (
        open(folder.parent / "driver.err", "w") as err,
        cluster.driver(sys.executable, "-c", DRIVER, *args, stdout=subprocess.PIPE, stderr=err) as driver,
    ):
        yield driver


def finish_driver(cluster: LoopbackCluster, folder: Path, model: Path, docs: Path) -> str:
    """Run the driver script to its end; its stdout."""
    with start_driver(cluster, folder, model, docs, pause=0) as driver:
        out, _ = driver.communicate()
    assert driver.returncode == 0 and "finished" in out, driver_errors(folder)
    return out


def finished_report(out: str) -> dict:
    """The driver's ``finished {...}`` report; Ray's own log lines may follow it on stdout."""
    return json.loads(out.split("finished ", 1)[1].splitlines()[0])


def driver_errors(folder: Path) -> str:
    return (folder.parent / "driver.err").read_text()[-3000:]


def committed(line: str) -> tuple[int, int] | None:
    parts = line.split()
    return (int(parts[1]), int(parts[3])) if line.startswith("committed") else None


def test_a_node_losing_its_model_actor_mid_job_loses_and_repeats_nothing(
    cluster: LoopbackCluster, docs: Path, reference: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    embedder = Embedder.load(tiny_model_dir)
    folder = new_collection(tmp_path / "c", embedder)
    total = len(rows(reference, embedder)[0])
    killed = after_kill = 0
    out = []
    with start_driver(cluster, folder, tiny_model_dir, docs, pause=0.3) as driver:
        assert driver.stdout is not None
        for line in driver.stdout:
            out.append(line)
            progress = committed(line)
            if progress is None:
                continue
            if killed:
                after_kill += 1
            elif progress[0] >= 128:
                assert progress[0] < progress[1], "the job finished before the fault"
                deadline = time.time() + 60
                while (pid := cluster.worker_pid(1, b"EmbedBatches")) is None:
                    assert time.time() < deadline, "no model actor on the second node"
                    time.sleep(0.5)
                os.kill(pid, signal.SIGKILL)
                killed = pid
        driver.wait()
    assert killed
    if driver.returncode != 0:  # Ray gave up on the job: the message says so, and a re-run finishes it
        assert "RayJobError: The Ray job failed" in driver_errors(folder), driver_errors(folder)
        with Collection.open(folder, embedder=embedder) as coll:
            part = coll.count()[1]
        rerun = finished_report(finish_driver(cluster, folder, tiny_model_dir, docs))
        assert rerun["chunks"] == total - part  # the re-run stored only what was missing
    else:
        assert after_kill > 0  # Ray restarted the actor and retried its batches; the job went on
        finished = finished_report("".join(out))
        assert finished["chunks"] == total  # retried batches were not counted twice
    with (
        Collection.open(folder, embedder=embedder) as coll,
        Collection.open(reference, embedder=embedder) as ref,
    ):
        assert coll.count() == ref.count() == (100, total)  # exact final counts: each document, chunk once
    assert_same_as_reference(folder, reference, embedder)  # same ids, none twice, same vectors


def test_a_re_run_after_the_driver_is_killed_finishes_the_job(
    cluster: LoopbackCluster, docs: Path, reference: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    embedder = Embedder.load(tiny_model_dir)
    folder = new_collection(tmp_path / "c", embedder)
    with start_driver(cluster, folder, tiny_model_dir, docs, pause=0.2) as driver:
        assert driver.stdout is not None
        for line in driver.stdout:
            progress = committed(line)
            if progress is not None and progress[0] >= 640:
                assert progress[0] < progress[1], "the job finished before the fault"
                driver.send_signal(signal.SIGKILL)
                break
        assert driver.wait() == -signal.SIGKILL
    with Collection.open(folder, embedder=embedder) as coll:
        part = coll.count()[1]
    out = finish_driver(cluster, folder, tiny_model_dir, docs)
    finished = finished_report(out)
    total = len(rows(reference, embedder)[0])
    assert 640 <= part < total and finished["chunks"] == total - part  # only what was missing
    assert_same_as_reference(folder, reference, embedder)
