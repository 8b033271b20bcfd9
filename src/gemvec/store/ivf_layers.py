"""A collection's IVF index: the merged base on disk, plus new chunks in RAM, minus removed chunks.

The base's data file is written once by a merge and then only mapped, read-only, perhaps by other
processes too, so changes wait beside it: new chunks go to the *delta*, an in-RAM IVF with the
base's trained quantiser, and removed chunks become ids that every search filters out.
:meth:`LayeredIvf.compact` folds both into a new base when they grow. :mod:`gemvec.store.persist`
saves the base and the removed ids; the delta is the chunks past ``covers``, read again from
SQLite on open (at most ``COMPACT_MAX`` of them).
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import faiss
import numpy as np

from gemvec.store import ivf
from gemvec.store.db import iter_vectors, read_vectors

COMPACT_FRACTION = 0.1  # fold the changes into a new base once they pass this share of it ...
COMPACT_MAX = 200_000  # ... or this many
SHARD_VECTORS = 1_000_000  # a rebuild writes a shard file per this many vectors, then merges them


class LayeredIvf:
    """Base (on disk, or in RAM until first saved) + delta - removed, searched as one IVF index."""

    is_trained = True

    def __init__(self, base: faiss.Index, covers: int, removed: np.ndarray | list[int] = ()) -> None:
        self._start(base, covers, np.unique(np.asarray(removed, dtype=np.int64)))

    def _start(self, base: faiss.Index, covers: int, removed: np.ndarray) -> None:
        self.base = base
        self.covers = covers  # the base holds every chunk with id <= covers, except the removed ones
        self.delta = ivf.empty_copy(base)
        self.removed = removed
        self._kept: tuple | None = None  # selector of the ids not removed (and what it refers to)

    @classmethod
    def in_ram(cls, trained: faiss.Index, ids: np.ndarray, vectors: np.ndarray) -> LayeredIvf:
        base = ivf.empty_copy(trained)
        base.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
        return cls(base, int(np.max(ids)) if len(ids) else 0)

    @classmethod
    def load(cls, header: bytes, folder: Path, covers: int, removed: list[int]) -> LayeredIvf:
        """The saved base (its header, mapping the data file it names in ``folder``)."""
        base = faiss.deserialize_index(np.frombuffer(header, dtype=np.uint8), faiss.IO_FLAG_SKIP_IVF_DATA)
        return cls(ivf.attach_data(base, folder), covers, removed)

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal) - len(self.removed) + int(self.delta.ntotal)

    @property
    def pending(self) -> int:
        """Changes not yet in the base."""
        return int(self.delta.ntotal) + len(self.removed)

    def add_with_ids(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add chunks to the delta; ids up to ``covers`` are in the base already (a reader catching up)."""
        new = np.asarray(ids, dtype=np.int64) > self.covers
        if new.any():
            self.delta.add_with_ids(np.ascontiguousarray(vectors[new]), np.asarray(ids)[new])

    def remove_ids(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if (ids > self.covers).any():
            self.delta.remove_ids(ids[ids > self.covers])
        if (ids <= self.covers).any():
            self.removed = np.union1d(self.removed, ids[ids <= self.covers])
            self._kept = None

    def search(
        self, queries: np.ndarray, k: int, nprobe: int | None = None, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query over base and delta; ids are -1 where fewer exist."""
        only = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)) if allowed is not None else None
        base_selector = only
        if len(self.removed):
            if self._kept is None:
                removed = faiss.IDSelectorBatch(self.removed)
                self._kept = (faiss.IDSelectorNot(removed), removed)
            base_selector = self._kept[0] if only is None else faiss.IDSelectorAnd(only, self._kept[0])
        scores, ids = ivf.search(self.base, queries, k, nprobe, base_selector)
        if self.delta.ntotal:
            more_scores, more_ids = ivf.search(self.delta, queries, k, nprobe, only)
            scores, ids = np.hstack([scores, more_scores]), np.hstack([ids, more_ids])
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        scores[ids < 0] = -np.inf
        return scores, ids

    def needs_compaction(self, folder: Path) -> bool:
        """True when the changes have grown, or the base is not (or no longer) a data file in ``folder``."""
        if not ivf.is_ondisk(self.base) or not (folder / ivf.data_name(self.base)).is_file():
            return True
        return self.pending > min(COMPACT_MAX, max(1.0, COMPACT_FRACTION * self.base.ntotal))

    def compact(self, data_path: Path, covers: int) -> None:
        """Fold delta and removed ids into a new base at ``data_path``, holding the ids <= ``covers``."""
        merged = ivf.merge(self.base, [self.base, self.delta], data_path)
        if len(self.removed):
            merged.remove_ids(self.removed)  # the new file is not published yet: it may change
            ivf.fsync(data_path)
        self._start(merged, covers, np.empty(0, np.int64))

    def header(self) -> bytes:
        """The base without its lists (they are in its data file)."""
        return faiss.serialize_index(self.base).tobytes()

    def ids(self) -> np.ndarray:
        """Every id searched: the base's but the removed ones, and the delta's."""
        base = ivf.ids_of(self.base)
        return np.concatenate([base[~np.isin(base, self.removed)], ivf.ids_of(self.delta)])


def build_from_db(conn: sqlite3.Connection, dim: int, factory: str, folder: Path) -> LayeredIvf:
    """Train on a sample of the stored vectors, add them all shard by shard, merge into a data file.

    Only one shard of codes is in RAM at a time; the others wait in shard files next to the index.
    """
    trained = ivf.train_ivf(sample_vectors(conn, dim, ivf.train_size(factory)), dim, factory)
    covers = 0
    with tempfile.TemporaryDirectory(dir=folder, prefix=".ivf-build-") as tmp:
        shards, part = [], ivf.empty_copy(trained)
        for ids, vectors in iter_vectors(conn, dim):
            if part.ntotal >= SHARD_VECTORS:
                path = f"{tmp}/shard-{len(shards)}.faiss"
                faiss.write_index(part, path)
                shards.append(faiss.read_index(path, faiss.IO_FLAG_MMAP))
                part = ivf.empty_copy(trained)
            part.add_with_ids(vectors, ids)
            covers = int(ids[-1])
        merged = ivf.merge(trained, [*shards, part], ivf.new_data_path(folder))
    return LayeredIvf(merged, covers)


def sample_vectors(conn: sqlite3.Connection, dim: int, size: int, seed: int = 0) -> np.ndarray:
    """Up to ``size`` stored vectors drawn at random (the ids first, then only those vectors)."""
    ids = np.fromiter((r[0] for r in conn.execute("SELECT id FROM chunks")), dtype=np.int64)
    if len(ids) > size:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size, replace=False))
    return read_vectors(conn, ids.tolist(), dim)[1]
