"""A disk cache of full-size embeddings, so evaluations never embed the same text twice.

Vectors are keyed by (model, precision, prompt + text) and stored at the model's full size
(768 for EmbeddingGemma), L2-normalised. A Matryoshka dimension is derived on read: keep the
first ``dim`` values and re-normalise, exactly what the model head does. So running again
with another ``--dim`` costs no encoding at all.

One SQLite file per (model fingerprint, precision) under the cache folder; the fingerprint
(:func:`gemvec.model.fingerprint.model_fingerprint`) hashes every weight, so a changed checkpoint
at the same path gets a fresh cache while copies of one checkpoint share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gemvec.home import cache_home
from gemvec.model.fingerprint import legacy_eval_fingerprint, model_fingerprint
from gemvec.model.quantize import SCHEME_TAGS

EncodeFn = Callable[[list[str]], np.ndarray]  # prompted texts -> (N, full_dim) normalised float32


def default_cache_dir() -> Path:
    """``eval`` in :func:`gemvec.home.cache_home` (``$GEMVEC_CACHE_DIR``, else ``~/.cache/gemvec``)."""
    return cache_home() / "eval"


def _adopt(old: Path, new: Path) -> None:
    """Rename a cache file named by the old fingerprint to ``new``, so its vectors stay in use.

    The WAL goes first and the database last: interrupted, the next call finishes the move.
    """
    if not old.exists():
        return
    for suffix in ("-wal", "-shm", ""):
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            os.rename(f"{old}{suffix}", f"{new}{suffix}")


class EmbeddingCache:
    """Full-size vectors of prompted texts in one SQLite file; ``None`` path = in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(":memory:" if path is None else str(path), timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL" if path is not None else "PRAGMA journal_mode=MEMORY")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, dim INTEGER, data BLOB)")
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_model(cls, cache_dir: Path | None, folder: Path | None, precision: str) -> EmbeddingCache:
        """The cache file of the checkpoint in ``folder`` at ``precision``; in memory without either."""
        if cache_dir is None or folder is None:
            return cls(None)
        tag = precision + SCHEME_TAGS.get(precision, "")  # a changed scheme gets fresh vectors
        path = cache_dir / f"{model_fingerprint(folder, str(folder))}-{tag}.sqlite"
        if not path.exists():
            _adopt(cache_dir / f"{legacy_eval_fingerprint(folder)}-{tag}.sqlite", path)
        return cls(path)

    def close(self) -> None:
        self._db.close()

    def embed(
        self,
        texts: Sequence[str],
        encode: EncodeFn,
        *,
        chunk_size: int = 512,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Vectors for prompted ``texts``, in order: cached ones are read, the rest encoded and stored.

        Missing texts are encoded longest first in chunks of ``chunk_size``, each stored as soon as
        it is done, so an interrupted run keeps its work. ``on_progress(done, total)`` is called with
        the number of texts to encode before the first chunk and after each one.
        """
        keys = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]
        found = self._lookup(set(keys))
        pending: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found:
                pending.setdefault(key, text)
        self.hits += len(keys) - sum(1 for k in keys if k not in found)
        self.misses += len(pending)
        todo = sorted(pending, key=lambda k: -len(pending[k]))
        if on_progress is not None:
            on_progress(0, len(todo))
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            vectors = np.asarray(encode([pending[k] for k in chunk]), dtype=np.float32)
            self._store(chunk, vectors)
            found.update(zip(chunk, vectors, strict=True))
            if on_progress is not None:
                on_progress(start + len(chunk), len(todo))
        if not keys:
            return np.empty((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def _lookup(self, keys: set[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        ordered = list(keys)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, dim, data in self._db.execute(
                f"SELECT key, dim, data FROM vectors WHERE key IN ({marks})", chunk
            ):
                found[key] = np.frombuffer(data, dtype=np.float32, count=dim)
        return found

    def _store(self, keys: list[bytes], vectors: np.ndarray) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                [(k, v.shape[0], v.tobytes()) for k, v in zip(keys, vectors, strict=True)],
            )
