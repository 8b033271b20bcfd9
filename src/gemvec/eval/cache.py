"""A disk cache of full-size embeddings, so evaluations never embed the same text twice.

Vectors are keyed by (model, precision, prompt + text) and stored at the model's full size
(768 for EmbeddingGemma), L2-normalised. A Matryoshka dimension is derived on read: keep the
first ``dim`` values and re-normalise, exactly what the model head does. So running again
with another ``--dim`` costs no encoding at all.

One SQLite file per (model fingerprint, precision) under the cache folder; the fingerprint
hashes the weights file's size and its first and last 1 MiB, so a changed checkpoint at the
same path gets a fresh cache while copies of one checkpoint share it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

EncodeFn = Callable[[list[str]], np.ndarray]  # prompted texts -> (N, full_dim) normalised float32
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$GEMVEC_CACHE_DIR/eval``, else ``$XDG_CACHE_HOME/gemvec/eval`` or ``~/.cache/gemvec/eval``."""
    if os.environ.get("GEMVEC_CACHE_DIR"):
        return Path(os.environ["GEMVEC_CACHE_DIR"]) / "eval"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gemvec" / "eval"


def model_fingerprint(folder: Path) -> str:
    """A short content hash of a checkpoint folder's weights (and output head)."""
    digest = hashlib.sha256()
    for name in ("model.safetensors", "2_Dense/model.safetensors", "3_Dense/model.safetensors"):
        path = folder / name
        if not path.exists():
            continue
        size = path.stat().st_size
        digest.update(f"{name}:{size}".encode())
        with path.open("rb") as f:
            digest.update(f.read(_CHUNK))
            if size > _CHUNK:
                f.seek(max(size - _CHUNK, _CHUNK))
                digest.update(f.read(_CHUNK))
    return digest.hexdigest()[:16]


def matryoshka(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Keep the first ``dim`` values of each row and L2-normalise again."""
    cut = np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


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
        if cache_dir is None or folder is None:
            return cls(None)
        return cls(cache_dir / f"{model_fingerprint(folder)}-{precision}.sqlite")

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
