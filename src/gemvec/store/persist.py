"""Saving and verifying the FAISS index next to the database.

The index file is written to a temporary name, fsynced and renamed, then a small JSON
record (size, CRC-32, vector count, largest chunk id, deletion epoch) is renamed into place
the same way. On open the record must match both the file and the database, otherwise the
index is caught up (only newer chunks missing) or rebuilt from SQLite, the source of truth.

An IVF index (:mod:`gemvec.store.ivf_layers`) is saved as its header (the index file) and the
data file it names, written once under a fresh name and fsynced before the header. The record
adds the data file's name and size and the ids removed from it since its merge. The CRC-32
covers the header only: checking the data file's would read all of it at every open, which
mapping it is meant to avoid.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from gemvec.errors import CollectionError, InputError
from gemvec.store import ivf
from gemvec.store.db import iter_vectors
from gemvec.store.ivf_layers import LayeredIvf, build_from_db
from gemvec.store.vectors import IndexSpec, VectorIndex

INDEX_FILE = ivf.HEADER_FILE  # flat/HNSW: the whole index; IVF: its header
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
    factory: str = ""  # IVF: the FAISS factory string
    data_file: str = ""  # IVF: the data file the header names, in the same folder ...
    data_size: int = 0  # ... and its size
    removed: list[int] = field(default_factory=list)  # IVF: ids <= max_id dropped since the merge


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
    """Save ``index``, which holds exactly the chunks with id <= ``max_id``, as of ``epoch``.

    An IVF index first folds its changes into a new data file when they have grown
    (:meth:`LayeredIvf.compact`); otherwise its record keeps what the data file lacks.
    """
    ivf_fields: dict = {}
    count = index.ntotal
    if index.spec.kind == "ivf":
        layered: LayeredIvf = index.index
        if layered.needs_compaction(folder):
            layered.compact(ivf.new_data_path(folder), max_id)
        name = ivf.data_name(layered.base)
        removed = layered.removed.tolist()
        ivf_fields = {"data_file": name, "data_size": (folder / name).stat().st_size, "removed": removed}
        count, max_id = int(layered.base.ntotal) - len(removed), layered.covers  # the delta is re-read
    data = index.to_bytes()
    _atomic_write(folder / INDEX_FILE, data)
    record = IndexRecord(
        len(data),
        zlib.crc32(data),
        count,
        max_id,
        epoch,
        index.spec.kind,
        index.trained_on,
        index.spec.factory,
        **ivf_fields,
    )
    _atomic_write(folder / RECORD_FILE, json.dumps(asdict(record)).encode())
    _remove_data_files(folder, keep=ivf_fields.get("data_file", ""))


def _remove_data_files(folder: Path, keep: str) -> None:
    """Delete IVF data files no saved header names (a process still mapping one keeps it until done)."""
    for path in folder.glob(f"index.*{ivf.DATA_SUFFIX}"):
        if path.name != keep:
            path.unlink(missing_ok=True)


def forget_unsaved(folder: Path, index: VectorIndex) -> None:
    """Unlink the data file of an IVF index rebuilt here but not saved (no write lock): the mapping
    stays valid, nothing is left behind, and a later save writes the data again."""
    if index.spec.kind != "ivf" or not ivf.is_ondisk(index.index.base):
        return
    name = ivf.data_name(index.index.base)
    try:
        saved = json.loads((folder / RECORD_FILE).read_text()).get("data_file")
    except (OSError, ValueError, AttributeError):
        saved = None
    if name != saved:
        (folder / name).unlink(missing_ok=True)


def _load_saved(folder: Path, spec: IndexSpec) -> tuple[VectorIndex, IndexRecord] | None:
    try:
        record = IndexRecord(**json.loads((folder / RECORD_FILE).read_text()))
        data = (folder / INDEX_FILE).read_bytes()
    except (OSError, ValueError, TypeError):
        return None
    if len(data) != record.size or zlib.crc32(data) != record.crc32:
        return None
    spec = replace(spec, kind=record.kind, factory=record.factory)
    try:
        if record.kind != "ivf":
            index = VectorIndex.from_bytes(spec, data, record.trained_on)
        elif (folder / record.data_file).stat().st_size != record.data_size:
            return None
        else:
            layered = LayeredIvf.load(data, folder, record.max_id, record.removed)
            index = VectorIndex(spec, layered, record.trained_on)
    except (OSError, RuntimeError, InputError):
        return None
    return (index, record) if index.ntotal == record.count else None


def rebuild_index(conn: sqlite3.Connection, spec: IndexSpec, folder: Path) -> VectorIndex:
    """A fresh index from every vector in SQLite (the int8 quantiser trains on the first batch;
    an IVF index on a sample of all, its lists merged into a new data file in ``folder``)."""
    count, _, _ = db_state(conn)
    spec = spec.for_size(count)
    if spec.kind == "ivf":
        return VectorIndex(spec, build_from_db(conn, spec.dim, spec.factory, folder), trained_on=count)
    index = VectorIndex.empty(spec)
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
    return rebuild_index(conn, spec, folder), True


def adopt_merged(conn: sqlite3.Connection, folder: Path, spec: IndexSpec, merged: Path) -> None:
    """Make an index :func:`ivf.merge_shards` wrote (in folder ``merged``) the collection's index.

    For a distributed build: the workers wrote the chunks and a shard each, the driver merged the
    shards and calls this holding the collection's write lock. The index must hold exactly the
    collection's chunks, checked id by id (reading 8 bytes per vector). Its data file moves into
    ``folder``. ``spec`` is the collection's (its index setting must choose IVF) with ``factory``
    the string the index was trained from.
    """
    count, max_id, epoch = db_state(conn)
    layered = LayeredIvf.load((merged / INDEX_FILE).read_bytes(), merged, max_id, [])
    stored = np.fromiter((r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id")), dtype=np.int64)
    if not np.array_equal(np.sort(layered.ids()), stored):
        raise CollectionError(
            f"The merged index in {merged} holds {layered.ntotal} vectors but not exactly the "
            f"{count} chunks of the collection {folder}; merge shards of every chunk, once each."
        )
    name = ivf.data_name(layered.base)
    if merged.resolve() != folder.resolve():
        shutil.move(merged / name, folder / name)  # the mapping stays valid
    save_index(folder, VectorIndex(replace(spec, kind="ivf"), layered, trained_on=count), max_id, epoch)
