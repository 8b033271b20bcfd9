"""The FAISS index of an open collection, kept in step with the database it caches.

SQLite is the truth; this object holds the index in memory, catches it up with commits made
by other connections (``PRAGMA data_version`` changes only for those), applies our own
commits, and saves it atomically (:mod:`gemvec.store.persist`) when a write ends.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gemvec.store import db, persist
from gemvec.store.vectors import IndexSpec, VectorIndex

SAVE_INTERVAL_S = 60.0  # during long ingests the index file is refreshed this often
log = logging.getLogger("gemvec.store")


@dataclass
class Change:
    """What one committed transaction did to the chunks: ids added (with their vectors) and removed."""

    added: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    vectors: np.ndarray | None = None
    removed: list[int] = field(default_factory=list)


class LiveIndex:
    """The index over ``conn``'s chunks. ``current()`` for reading; ``apply()`` after each own commit."""

    def __init__(self, conn: sqlite3.Connection, folder: Path, spec: IndexSpec) -> None:
        self.conn = conn
        self.folder = folder
        self.spec = spec
        self._index: VectorIndex | None = None
        self._max_id = 0  # the index holds exactly the chunks with id <= _max_id ...
        self._epoch = 0  # ... as of this many deletions
        self._data_version = -1
        self._stale = False  # holds removed ids it cannot drop in place (HNSW): rebuilt on save
        self._last_save = time.monotonic()

    def current(self, try_lock: Callable[[], bool] | None = None) -> VectorIndex:
        """The index, loaded and verified on first use and caught up with other writers' commits.

        ``try_lock`` takes the collection's write lock without waiting; when it succeeds and the
        index had to be repaired, the repaired index is saved (then the caller releases the lock).
        """
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if self._index is None or version != self._data_version:
            self._catch_up(try_lock)
            self._data_version = version
        assert self._index is not None
        return self._index

    def _catch_up(self, try_lock: Callable[[], bool] | None) -> None:
        count, max_id, epoch = persist.db_state(self.conn)
        if self._index is not None and epoch == self._epoch:
            for ids, vectors in db.iter_vectors(self.conn, self.spec.dim, after_id=self._max_id):
                self._index.add(ids, vectors)
            if not self._index.needs_rebuild(count):
                self._max_id = max_id
                return
        self._index, changed = persist.open_index(self.conn, self.folder, self.spec)
        self._max_id, self._epoch = max_id, epoch
        saved = False
        if changed and try_lock is not None and try_lock():
            try:
                self.save()
                saved = True
            except OSError as exc:  # a reader must not fail for want of space to cache the index
                log.warning("could not save the index of %s (%s); using it in memory", self.folder, exc)
        if changed and not saved:
            persist.forget_unsaved(self.folder, self._index)

    def apply(self, change: Change) -> None:
        """Reflect one of our own commits (the caller holds the write lock).

        Reading :meth:`current` first may already have caught up with this very commit (when
        another connection committed in between, the whole tail is read from SQLite), so only
        ids beyond what the index holds are added: a batch is never added twice.
        """
        index = self.current()
        if change.removed and not index.remove(np.asarray(change.removed, dtype=np.int64)):
            self._stale = True  # hits on removed ids are dropped by rescoring meanwhile
        added = np.asarray(change.added, dtype=np.int64)
        if len(added):
            fresh = added > self._max_id
            if fresh.any():
                assert change.vectors is not None
                index.add(added[fresh], change.vectors[fresh])
        _, self._max_id, self._epoch = persist.db_state(self.conn)
        if time.monotonic() - self._last_save > SAVE_INTERVAL_S:
            self.save()

    def save(self) -> None:
        """Rebuild if stale or the wrong kind for its size, then write it next to the database."""
        if self._index is None:
            return
        count, max_id, epoch = persist.db_state(self.conn)
        if self._stale or self._index.needs_rebuild(count):
            self._index = persist.rebuild_index(self.conn, self.spec, self.folder)
            self._max_id, self._epoch, self._stale = max_id, epoch, False
        persist.save_index(self.folder, self._index, self._max_id, self._epoch)
        self._last_save = time.monotonic()
