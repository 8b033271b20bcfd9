"""A collection on a real, full filesystem (a small tmpfs mounted for the test; needs root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_store import consistent, write_docs

from gemvec.errors import StorageFullError
from gemvec.store import Collection
from gemvec.store.persist import INDEX_FILE


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs at tmp_path/small, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, name: str = "filler") -> Path:
    """Write a file until the filesystem has no space left; return it (delete it to free the space)."""
    filler = folder / name
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_full_disk_reads_still_work_and_writes_fail_clearly(small_disk: Path, tiny_embedder) -> None:
    """#6: a read-only search crashed when the index could not be saved; the SQLite error was hidden."""
    folder = small_disk / "c"
    write_docs(small_disk / "docs", 12)
    with Collection.create(folder, embedder=tiny_embedder) as coll:
        coll.add([small_disk / "docs"])
        before = coll.info()["chunks"]
    (folder / INDEX_FILE).unlink()  # the next reader rebuilds the index and tries to save it
    with Collection.open(folder, embedder=tiny_embedder) as coll:  # open, as in a running server
        filler = fill(small_disk)
        hits = coll.search("Document 3 talks about", k=3, mode="dense")
        assert len(hits) == 3
        assert leftovers(folder) == []
        with pytest.raises(StorageFullError, match="full"):
            coll.add_texts(
                [f"A new note number {i} about the harbor and its lemon trees." for i in range(200)]
            )
        assert leftovers(folder) == []
    more = fill(small_disk, "more")  # closing removed SQLite's WAL files and freed their space
    with pytest.raises(StorageFullError, match="disk is full"):
        Collection.open(folder)  # a new connection needs room for SQLite's shared-memory file

    filler.unlink()
    more.unlink()
    with Collection.open(folder, embedder=tiny_embedder) as coll:
        assert coll.info()["chunks"] == before
        consistent(coll)
        report = coll.add_texts(["Space again: one more note."])
        assert report.added == 1
