"""Interrupting an ingest for real: kill -9 and Ctrl-C (SIGINT) of a subprocess mid-way."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_store import consistent, write_docs

from gemvec.store import Collection
from gemvec.store.persist import RECORD_FILE

CHILD = """
import signal, sys, time
# Ctrl-C as a terminal delivers it: a shell without job control (``pytest &`` in a script) starts
# background commands with SIGINT ignored, and the child would inherit that.
signal.signal(signal.SIGINT, signal.default_int_handler)
from gemvec import Embedder
from gemvec.store import Collection
from gemvec.store import writer
writer.BATCH_CHUNKS = 16
coll = Collection.open(sys.argv[2], embedder=Embedder.load(sys.argv[1]))
def progress(done, total):
    print(f"committed {done} of {total}", flush=True)
    time.sleep(0.5)
coll.add([sys.argv[3]], progress=progress)
print("finished", flush=True)
"""


def interrupt_ingest(tiny_model_dir: Path, folder: Path, docs: Path, sig: int) -> int:
    """Start an ingest in a subprocess and send ``sig`` once two batches are committed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tiny_model_dir), str(folder), str(docs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        for line in child.stdout:
            if line.startswith("committed"):
                done, total = int(line.split()[1]), int(line.split()[3])
                if done >= 32:
                    assert done < total, "the ingest finished before it could be interrupted"
                    child.send_signal(sig)
                    break
        else:
            pytest.fail(f"child ended early: {child.stderr.read() if child.stderr else ''}")
        return child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.slow
def test_kill_9_mid_ingest_leaves_a_consistent_resumable_collection(
    tmp_path: Path, tiny_model_dir: Path, tiny_embedder
) -> None:
    docs = tmp_path / "docs"
    write_docs(docs, 10)
    with Collection.create(tmp_path / "c", embedder=tiny_embedder) as coll:
        coll.add([docs])  # a saved index of 10 documents: the killed run must be caught up on open
    write_docs(docs, 150, start=10)
    code = interrupt_ingest(tiny_model_dir, tmp_path / "c", docs, signal.SIGKILL)
    assert code == -signal.SIGKILL

    with Collection.open(tmp_path / "c", embedder=tiny_embedder) as coll:
        committed = coll.info()["documents"]
        assert 10 < committed < 160
        consistent(coll)  # whole documents only; index == database
        hits = coll.search("Document 12 talks about", k=3, mode="dense")
        assert hits and all(
            h.chunk_id in {r[0] for r in coll.conn.execute("SELECT id FROM chunks")} for h in hits
        )
        report = coll.add([docs])  # resume
        assert report.added == 160 - committed and report.unchanged == committed
        consistent(coll)
        sources = [r[0] for r in coll.conn.execute("SELECT source FROM documents")]
        assert len(sources) == len(set(sources)) == 160


@pytest.mark.slow
def test_ctrl_c_mid_ingest_saves_the_index_of_what_was_committed(
    tmp_path: Path, tiny_model_dir: Path, tiny_embedder
) -> None:
    docs = tmp_path / "docs"
    write_docs(docs, 120)
    Collection.create(tmp_path / "c", embedder=tiny_embedder).close()
    code = interrupt_ingest(tiny_model_dir, tmp_path / "c", docs, signal.SIGINT)
    assert code != 0
    record = json.loads((tmp_path / "c" / RECORD_FILE).read_text())
    with Collection.open(tmp_path / "c", embedder=tiny_embedder) as coll:
        assert record["count"] == coll.info()["chunks"] > 0
        consistent(coll)
        committed = coll.info()["documents"]
        report = coll.add([docs])  # resume
        assert report.added == 120 - committed and report.unchanged == committed
        assert coll.info()["documents"] == 120
