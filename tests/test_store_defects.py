"""Regression tests for data-loss and crash defects found by a fault-and-bad-input probe (issue #21).

Each test names the numbered finding it covers; each failed on the code before the fix.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_store import consistent, write_docs

from gemvec.errors import CollectionNotFoundError, InputError
from gemvec.store import Collection, list_collections
from gemvec.store import writer as writer_module


def test_sync_keeps_a_duplicate_whose_original_was_deleted(tmp_path: Path, tiny_embedder) -> None:
    """#1: identical files in two folders; deleting the one that was stored must not lose the text."""
    text = "Kettles boil water for tea in the harbor office."
    for sub in ("x", "y"):
        (tmp_path / "d" / sub).mkdir(parents=True)
        (tmp_path / "d" / sub / "notes.txt").write_text(text)
    with Collection.create(tmp_path / "c", embedder=tiny_embedder) as coll:
        first = coll.add([tmp_path / "d"])
        assert (first.added, first.duplicates) == (1, 1)
        (tmp_path / "d" / "x" / "notes.txt").unlink()
        report = coll.sync()
        assert (report.removed, report.added) == (1, 1)
        hits = coll.search("kettles boil water", k=5, mode="keyword")
        assert [h.path for h in hits] == [str((tmp_path / "d" / "y" / "notes.txt").resolve())]
        again = coll.sync()
        assert (again.added, again.removed, again.unchanged) == (0, 0, 1)
        consistent(coll)


def test_a_commit_by_another_connection_during_a_write_does_not_add_a_batch_twice(
    tmp_path: Path, tiny_embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#2: another connection's commit between two of our batches made the index re-add a batch."""
    monkeypatch.setattr(writer_module, "BATCH_CHUNKS", 8)
    write_docs(tmp_path / "docs", 40)
    with Collection.create(tmp_path / "c", embedder=tiny_embedder) as coll:
        other = sqlite3.connect(tmp_path / "c" / "gemvec.sqlite", isolation_level=None)

        def commit_elsewhere(done: int, total: int) -> None:
            other.execute(
                "INSERT INTO settings(key, value) VALUES ('probe', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(done),),
            )

        coll.add([tmp_path / "docs"], progress=commit_elsewhere)
        chunks = coll.info()["chunks"]
        assert coll.index.ntotal == chunks
        consistent(coll)
        assert len(coll.search("Document", k=30, mode="dense")) == 30
    other.close()


CREATE_AND_INDEX = """
import sys
from gemvec import Embedder
from gemvec.store import Collection
coll = Collection.create(sys.argv[2], embedder=Embedder.load(sys.argv[1]), exist_ok=True)
try:
    print(coll.add([sys.argv[3]]).to_dict(), flush=True)
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
"""


@pytest.mark.slow
def test_two_processes_creating_and_indexing_one_collection_at_once(
    tmp_path: Path, tiny_model_dir: Path, tiny_embedder
) -> None:
    """#2: two real processes race to create and fill the same new collection."""
    write_docs(tmp_path / "docs", 60)
    args = [
        sys.executable,
        "-c",
        CREATE_AND_INDEX,
        str(tiny_model_dir),
        str(tmp_path / "c"),
        str(tmp_path / "docs"),
    ]
    children = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [child.communicate(timeout=300) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    with Collection.open(tmp_path / "c", embedder=tiny_embedder) as coll:
        assert coll.info()["documents"] == 60
        consistent(coll)


KILLED_IN_CREATE = """
import os, signal, sys
from gemvec import Embedder
from gemvec.store import db
from gemvec.store import Collection
real = db.set_settings
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
db.set_settings = die
Collection.create(sys.argv[2], embedder=Embedder.load(sys.argv[1]))
"""


def test_a_kill_during_creation_leaves_no_half_collection(
    tmp_path: Path, tiny_model_dir: Path, tiny_embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#3: SIGKILL after the schema, before the settings: no unopenable collection is left behind."""
    monkeypatch.setenv("GEMVEC_HOME", str(tmp_path / "home"))
    Collection.create("before", embedder=tiny_embedder).close()
    child = subprocess.run(
        [sys.executable, "-c", KILLED_IN_CREATE, str(tiny_model_dir), "half"], capture_output=True, text=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    with pytest.raises(CollectionNotFoundError):
        Collection.open("half")
    Collection.create("zafter", embedder=tiny_embedder).close()
    assert [p.name for p in list_collections()] == ["before", "zafter"]
    with Collection.create("half", embedder=tiny_embedder) as coll:  # the name is free to use
        assert coll.info()["documents"] == 0


LONG_DOCUMENT_KILLED = """
import os, signal, sys
from gemvec import Embedder
from gemvec.store import Collection, writer
writer.BATCH_CHUNKS = 8
coll = Collection.open(sys.argv[2], embedder=Embedder.load(sys.argv[1]))
def progress(done, total):
    if done >= 24:
        print(done, total, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
coll.add([sys.argv[3]], progress=progress)
"""


@pytest.mark.slow
def test_a_long_document_commits_as_it_goes_and_resumes_mid_document(
    tmp_path: Path, tiny_model_dir: Path, tiny_embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#4: a document far longer than a batch lost everything on a kill; now it resumes mid-document."""
    long_text = " ".join(
        f"Sentence {i} is about the {['harbor', 'garden', 'island'][i % 3]}." for i in range(400)
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "long.txt").write_text(long_text)
    with Collection.create(tmp_path / "reference", embedder=tiny_embedder, chunk_tokens=16, overlap=2) as ref:
        monkeypatch.setattr(writer_module, "BATCH_CHUNKS", 8)
        ref.add([tmp_path / "docs"])
        expected = ref.conn.execute(
            "SELECT position, start, end, text FROM chunks ORDER BY position"
        ).fetchall()
    assert len(expected) > 40

    Collection.create(tmp_path / "c", embedder=tiny_embedder, chunk_tokens=16, overlap=2).close()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            LONG_DOCUMENT_KILLED,
            str(tiny_model_dir),
            str(tmp_path / "c"),
            str(tmp_path / "docs"),
        ],
        capture_output=True,
        text=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    with Collection.open(tmp_path / "c", embedder=tiny_embedder) as coll:
        committed = coll.info()["chunks"]
        assert committed >= 24  # kept, and searchable, although the document is unfinished
        assert coll.conn.execute("SELECT complete FROM documents").fetchone() == (0,)
        consistent(coll)
        report = coll.add([tmp_path / "docs"])
        assert report.chunks == len(expected) - committed  # only the rest was embedded
        assert coll.conn.execute("SELECT complete FROM documents").fetchone() == (1,)
        got = coll.conn.execute("SELECT position, start, end, text FROM chunks ORDER BY position").fetchall()
        assert got == expected
        consistent(coll)


def test_filter_values_out_of_range_or_too_many_are_input_errors(tmp_path: Path, tiny_embedder) -> None:
    """#5: a filter value >= 2**63 raised OverflowError; ~300k values "too many SQL variables"."""
    with Collection.create(tmp_path / "c", embedder=tiny_embedder) as coll:
        coll.add_texts(["alpha harbor", "beta garden"], ids=["a", "b"], metadata=[{"n": 1}, {"n": 2}])
        with pytest.raises(InputError, match="64-bit"):
            coll.search("harbor", filters={"n": 2**63}, mode="keyword")
        many = [*range(10, 50_000), 2]
        hits = coll.search("garden", filters={"n": many}, mode="hybrid", k=2)
        assert [h.source for h in hits] == ["b"]
        with pytest.raises(InputError, match="limit"):
            coll.search("garden", filters={"n": list(range(300_000))}, mode="keyword")


def test_an_unreadable_file_is_reported_and_the_others_are_indexed(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """#7: one unreadable file aborted the whole run with a PermissionError traceback."""
    docs = tmp_path / "docs"
    write_docs(docs, 3)
    (docs / "secret.txt").write_text("top secret")
    (docs / "secret.txt").chmod(0)
    command = [
        sys.executable,
        "-m",
        "gemvec",
        "index",
        str(docs),
        "-c",
        str(tmp_path / "c"),
        "-m",
        str(tiny_model_dir),
    ]
    if os.geteuid() == 0:  # root reads any file: drop the capabilities that let it, so the check is real
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux): cannot make a file unreadable")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    result = subprocess.run(command, capture_output=True, text=True)
    assert "Traceback" not in result.stderr, result.stderr
    assert "secret.txt" in result.stderr and "Permission" in result.stderr
    assert "3 added" in result.stderr


def test_a_symlink_loop_is_a_clear_error(tmp_path: Path, tiny_embedder) -> None:
    """#8: a symlink loop given as the path raised RuntimeError."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with (
        Collection.create(tmp_path / "c", embedder=tiny_embedder) as coll,
        pytest.raises(InputError, match="loop"),
    ):
        coll.add([tmp_path / "loop"])


def test_a_nan_vector_neither_ranks_nor_hides_the_true_top_hit(tmp_path: Path, tiny_embedder) -> None:
    """#14: chunks whose stored vector is NaN are never ranked; the best real hit stays first."""
    import numpy as np

    from gemvec.store.persist import INDEX_FILE

    with Collection.create(tmp_path / "c", embedder=tiny_embedder) as coll:
        coll.add_texts([f"Note {i} about the harbor and lemons number {i}." for i in range(40)])
        top = coll.search("Note 3 about the harbor", k=3, mode="dense")
        ids = [r[0] for r in coll.conn.execute("SELECT id FROM chunks ORDER BY id")]
        poisoned = [i for i in ids if i != top[0].chunk_id][::2]
        nan = np.full(coll.dim, np.nan, dtype=np.float32).tobytes()
        coll.conn.executemany("UPDATE chunks SET vector = ? WHERE id = ?", [(nan, i) for i in poisoned])
    (tmp_path / "c" / INDEX_FILE).unlink()  # the index is rebuilt from SQLite, NaN vectors included
    with Collection.open(tmp_path / "c", embedder=tiny_embedder) as coll:
        hits = coll.search("Note 3 about the harbor", k=5, mode="dense")
        assert hits[0].chunk_id == top[0].chunk_id
        assert not set(poisoned) & {h.chunk_id for h in hits} and all(np.isfinite(h.score) for h in hits)
