"""Saving and verifying the FAISS index next to the database.

The index file is written to a temporary name, fsynced and renamed, then a small JSON
record (size, CRC-32, vector count, largest chunk id, deletion epoch) is renamed into place
the same way. On open the record must match both the file and the database, otherwise the
index is caught up (only newer chunks missing) or rebuilt from SQLite, the source of truth.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gemvec.store.db import iter_vectors
from gemvec.store.vectors import IndexSpec, VectorIndex

INDEX_FILE = "index.faiss"
RECORD_FILE = "index.json"


@dataclass
class IndexRecord:
    size: int
    crc32: int
    count: int
    max_id: int  # the index holds exactly the chunks with id <= max_id ...
    epoch: int  # ... as of this many deletions
    kind: str
    trained_on: int


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename; on any failure (a full disk) remove the temporary."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def db_state(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(chunk count, largest chunk id, deletion epoch) as the database sees them now."""
    count, max_id = conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM chunks").fetchone()
    row = conn.execute("SELECT value FROM settings WHERE key = 'epoch'").fetchone()
    return int(count), int(max_id), int(row[0]) if row else 0


def save_index(folder: Path, index: VectorIndex, max_id: int, epoch: int) -> None:
    data = index.to_bytes()
    _atomic_write(folder / INDEX_FILE, data)
    record = IndexRecord(
        len(data), zlib.crc32(data), index.ntotal, max_id, epoch, index.spec.kind, index.trained_on
    )
    _atomic_write(folder / RECORD_FILE, json.dumps(asdict(record)).encode())


def _load_saved(folder: Path, spec: IndexSpec) -> tuple[VectorIndex, IndexRecord] | None:
    try:
        record = IndexRecord(**json.loads((folder / RECORD_FILE).read_text()))
        data = (folder / INDEX_FILE).read_bytes()
    except (OSError, ValueError, TypeError):
        return None
    if len(data) != record.size or zlib.crc32(data) != record.crc32:
        return None
    try:
        index = VectorIndex.from_bytes(replace(spec, kind=record.kind), data, record.trained_on)
    except RuntimeError:
        return None
    return (index, record) if index.ntotal == record.count else None


def rebuild_index(conn: sqlite3.Connection, spec: IndexSpec) -> VectorIndex:
    """A fresh index from every vector in SQLite (the int8 quantiser trains on the first batch)."""
    count, _, _ = db_state(conn)
    index = VectorIndex.empty(spec.for_size(count))
    for ids, vectors in iter_vectors(conn, spec.dim):
        index.add(ids, vectors)
    return index


def open_index(conn: sqlite3.Connection, folder: Path, spec: IndexSpec) -> tuple[VectorIndex, bool]:
    """The index agreeing with the database, and whether it changed since it was last saved.

    A saved index from the same epoch that holds exactly the chunks up to its max_id is
    caught up with the newer chunks (the usual state after an interrupted ingest);
    anything else is rebuilt.
    """
    count, _, epoch = db_state(conn)
    loaded = _load_saved(folder, spec)
    if loaded is not None:
        index, record = loaded
        upto = conn.execute("SELECT COUNT(*) FROM chunks WHERE id <= ?", (record.max_id,)).fetchone()[0]
        if record.epoch == epoch and upto == record.count:
            changed = False
            for ids, vectors in iter_vectors(conn, spec.dim, after_id=record.max_id):
                index.add(ids, vectors)
                changed = True
            if not index.needs_rebuild(count):
                return index, changed
    return rebuild_index(conn, spec), True
