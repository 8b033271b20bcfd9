"""Collection: a folder with a SQLite database (the truth) and a FAISS index (a verified cache).

coll = Collection.create("notes", dim=256)           # or Collection.open("./somewhere")
coll.add(["~/notes"], include=["*.md"])              # chunk, embed, commit batch by batch
coll.sync()                                          # re-embed changed files, drop deleted ones
hits = coll.search("how do I ...", k=5, mode="hybrid")
answer = coll.ask("how do I ...", make_generator("smollm2"))
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gemvec.errors import InputError
from gemvec.ingest.loaders import SourceDocument, TableOptions
from gemvec.ingest.walk import find_files
from gemvec.store import db, files, persist, writer
from gemvec.store.identity import CollectionError, check_same, model_fingerprint
from gemvec.store.paths import DB_FILE, resolve_collection
from gemvec.store.vectors import IndexSpec, VectorIndex, parse_vector_precision

if TYPE_CHECKING:
    from gemvec.embedder import Embedder
    from gemvec.llm.base import Generator
    from gemvec.tasks.rag import Answer, AnswerStream
    from gemvec.tasks.search import Hit

SAVE_INTERVAL_S = 60.0  # during long ingests the index file is refreshed this often
LOCK_FILE = "write.lock"


@dataclass(frozen=True)
class StoredDocument:
    """A document as the collection holds it; ``text`` is rebuilt from its chunks."""

    source: str
    path: str | None
    title: str | None
    metadata: dict[str, Any]
    text: str


def stitch(chunks: Sequence[tuple[int, int, str]]) -> str:
    """A document's text from its (start, end, text) chunks: overlaps dropped, gaps become one newline.

    Chunks are exact slices of the text with edge whitespace trimmed, so only the whitespace
    between non-overlapping chunks is unknown.
    """
    parts: list[str] = []
    end = 0
    for start, stop, text in chunks:
        if parts and start >= end:
            parts.append("\n")
        parts.append(text[max(0, end - start) :] if parts else text)
        end = max(end, stop)
    return "".join(parts)


class Collection:
    """Documents, chunks and vectors in one folder. Build with :meth:`create` or :meth:`open`."""

    def __init__(
        self, folder: Path, conn, settings: dict[str, str], embedder: Embedder | None = None
    ) -> None:
        self.folder = folder
        self.conn = conn
        self.settings = settings
        self._embedder = embedder
        self.dim = int(settings["dim"])
        self.precision = parse_vector_precision(settings["precision"])
        self.chunk_tokens = int(settings["chunk_tokens"])
        self.overlap = int(settings["overlap"])
        self._spec = IndexSpec(self.dim, self.precision)
        self._index: VectorIndex | None = None
        self._index_max_id = 0
        self._index_epoch = 0
        self._data_version = -1
        self._last_save = time.monotonic()
        self._lock_fd: int | None = None
        self._stale = False  # the index holds removed ids it cannot drop in place
        self._lock = threading.RLock()  # one connection shared by threads (e.g. the HTTP server)

    @property
    def name(self) -> str:
        return self.folder.name

    # -- creating and opening ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        model: str | None = None,
        embedder: Embedder | None = None,
        dim: int | None = None,
        precision: str | None = None,
        compute_precision: str | None = None,
        chunk_tokens: int = 256,
        overlap: int = 32,
        exist_ok: bool = False,
    ) -> Collection:
        """A new, empty collection. ``precision`` is the stored vector precision: float32, int8, binary."""
        folder = resolve_collection(name_or_path)
        if (folder / DB_FILE).exists():
            if exist_ok:
                return cls.open(folder, model=model, embedder=embedder, dim=dim, precision=precision)
            raise CollectionError(f"Collection {folder} already exists; open it, or delete it first.")
        vector_precision = parse_vector_precision(precision)
        embedder = embedder or _load_embedder(model, compute_precision)
        from gemvec.embedder import check_dim

        dim = check_dim(dim, embedder.dim)
        if vector_precision.value == "binary" and dim % 8:
            raise InputError(f"Binary vectors need a dim divisible by 8, got {dim}.")
        folder.mkdir(parents=True, exist_ok=True)
        conn = db.connect(folder / DB_FILE)
        with db.Transaction(conn):
            db.set_settings(
                conn,
                {
                    "model": embedder.model_name,
                    "model_path": str(embedder.folder or ""),
                    "model_id": model_fingerprint(embedder),
                    "dim": str(dim),
                    "precision": vector_precision.value,
                    "compute_precision": str(getattr(embedder.precision, "value", embedder.precision)),
                    "chunk_tokens": str(chunk_tokens),
                    "overlap": str(overlap),
                    "created_at": str(time.time()),
                    "epoch": "0",
                    "roots": "[]",
                },
            )
        return cls(folder, conn, db.get_settings(conn), embedder)

    @classmethod
    def open(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        model: str | None = None,
        embedder: Embedder | None = None,
        dim: int | None = None,
        precision: str | None = None,
    ) -> Collection:
        """An existing collection. Asking for another dim or precision than it was built with is refused.

        The embedding model loads on first use: ``embedder`` if given, else ``model``, else the
        one the collection was built with; a different model is refused.
        """
        folder = resolve_collection(name_or_path)
        if not (folder / DB_FILE).is_file():
            raise CollectionError(
                f"No collection at {folder}. Create it with `gemvec index PATH -c {name_or_path}`."
            )
        conn = db.connect(folder / DB_FILE)
        settings = db.get_settings(conn)
        if "dim" not in settings:
            raise CollectionError(
                f"{folder / DB_FILE} has no settings: it was not created by gemvec or is damaged."
            )
        hint = "open it without these options, or index into a new collection."
        check_same(folder.name, "dim", settings["dim"], dim, hint)
        if precision is not None:
            check_same(
                folder.name,
                "vector precision",
                settings["precision"],
                parse_vector_precision(precision).value,
                hint,
            )
        out = cls(folder, conn, settings)
        out._model_override = model
        if embedder is not None:
            out._set_embedder(embedder)
        return out

    _model_override: str | None = None

    @property
    def encode_dim(self) -> int | None:
        """The ``dim`` to pass to the embedder: None when the collection keeps the model's full size."""
        return None if self.dim == self.embedder.dim else self.dim

    @property
    def embedder(self) -> Embedder:
        """The embedding model: loaded on first use, checked against the one the collection was built with."""
        if self._embedder is None:
            model = self._model_override
            if model is None:
                stored = self.settings.get("model_path") or ""
                model = stored if stored and Path(stored).is_dir() else self.settings["model"]
            self._set_embedder(_load_embedder(model, None))
        assert self._embedder is not None
        return self._embedder

    def _set_embedder(self, embedder: Embedder) -> None:
        built, got = self.settings["model_id"], model_fingerprint(embedder)
        if built != got:
            check_same(
                self.name,
                "model",
                f"{self.settings['model']} (id {built})",
                f"{embedder.model_name} (id {got})",
                f"load {self.settings['model']}, or index into a new collection.",
            )
        self._embedder = embedder

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the index --------------------------------------------------------------------------

    @property
    def index(self) -> VectorIndex:
        """The FAISS index, loaded and verified on first use and caught up with other writers' commits."""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if self._index is None or version != self._data_version:
            self._sync_index()
            self._data_version = version
        assert self._index is not None
        return self._index

    def _sync_index(self) -> None:
        count, max_id, epoch = persist.db_state(self.conn)
        if self._index is not None and epoch == self._index_epoch:
            for ids, vectors in db.iter_vectors(self.conn, self.dim, after_id=self._index_max_id):
                self._index.add(ids, vectors)
            if not self._index.needs_rebuild(count):
                self._index_max_id = max_id
                return
        self._index, changed = persist.open_index(self.conn, self.folder, self._spec)
        self._index_max_id, self._index_epoch = max_id, epoch
        if changed and self._try_lock():
            try:
                self._save_index()
            finally:
                self._unlock()

    def _index_changed(self, new_ids: list[int], vectors: np.ndarray, removed: list[int]) -> None:
        """Called right after each commit of ours (we hold the write lock, so nobody else wrote)."""
        index = self.index
        if removed and not index.remove(np.asarray(removed)):
            self._stale = True  # HNSW cannot remove ids: rebuilt on save; hits on them are dropped meanwhile
        if new_ids:
            index.add(np.asarray(new_ids), vectors)
        _, self._index_max_id, self._index_epoch = persist.db_state(self.conn)
        if time.monotonic() - self._last_save > SAVE_INTERVAL_S:
            self._save_index()

    def _save_index(self) -> None:
        if self._index is None:
            return
        count, max_id, epoch = persist.db_state(self.conn)
        if self._stale or self._index.needs_rebuild(count):
            self._index = persist.rebuild_index(self.conn, self._spec)
            self._index_max_id, self._index_epoch, self._stale = max_id, epoch, False
        persist.save_index(self.folder, self._index, self._index_max_id, self._index_epoch)
        self._last_save = time.monotonic()

    # -- writing ----------------------------------------------------------------------------

    def _try_lock(self) -> bool:
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time (a lock file the OS releases even on kill -9); save the index at the end."""
        with self._lock:
            if not self._try_lock():
                raise CollectionError(
                    f"Collection {self.name} is being written by another process; try again later."
                )
            try:
                _ = self.index
                yield
            finally:
                try:
                    self._save_index()
                finally:
                    self._unlock()

    def add(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        table: TableOptions | None = None,
        progress: writer.ProgressFn | None = None,
        batch_size: int = 32,
        remove_missing: bool = False,
    ) -> writer.IngestReport:
        """Ingest files and folders (recursively). Unchanged files and documents are skipped.

        ``remove_missing``: also delete documents under these paths whose files are gone (sync).
        """
        roots = [str(Path(p).expanduser().resolve()) for p in paths]
        found = find_files(roots, include, exclude)
        report = writer.IngestReport()
        with self._writing():
            docs, markers = files.read_changed(self, found, table, report)
            pending = writer.plan(self, docs, report)
            writer.write(self, pending, report, progress, batch_size=batch_size)
            files.finish_files(self, markers, report)
            if remove_missing:
                files.remove_missing(self, roots, {str(p) for p in found}, report)
            files.remember_roots(self, roots, include, exclude, table)
        return report

    def sync(
        self, paths: Iterable[str | os.PathLike[str]] | None = None, **options: Any
    ) -> writer.IngestReport:
        """Bring the collection in line with its folders: re-embed changed files, remove deleted ones.

        Without ``paths``, every folder or file added before is synced with its original options.
        """
        if paths is not None:
            return self.add(paths, remove_missing=True, **options)
        total = writer.IngestReport()
        for root in json.loads(self.settings.get("roots", "[]")):
            table = TableOptions(**root["table"]) if root.get("table") else None
            if not Path(root["path"]).exists():
                part = writer.IngestReport()
                with self._writing():
                    files.remove_missing(self, [root["path"]], set(), part)
            else:
                part = self.add(
                    [root["path"]],
                    include=root["include"],
                    exclude=root["exclude"],
                    table=table,
                    remove_missing=True,
                    **options,
                )
            for key, value in part.to_dict().items():
                setattr(total, key, getattr(total, key) + value)
        return total

    def add_texts(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        titles: Sequence[str | None] | None = None,
        metadata: Sequence[dict] | None = None,
        progress: writer.ProgressFn | None = None,
    ) -> writer.IngestReport:
        """Add texts directly. ``ids`` are their sources (default: a hash of the text); same id = replace."""
        docs = []
        for i, text in enumerate(texts):
            source = (
                str(ids[i]) if ids is not None else "text:" + hashlib.sha256(text.encode()).hexdigest()[:16]
            )
            title = titles[i] if titles is not None else None
            docs.append(
                SourceDocument(source, text, title, None, dict(metadata[i]) if metadata is not None else {})
            )
        report = writer.IngestReport()
        with self._writing():
            writer.write(self, writer.plan(self, docs, report), report, progress)
        return report

    def delete(self, sources: Iterable[str | os.PathLike[str]]) -> int:
        """Delete documents by source id, file path, or every document under a folder; return how many."""
        keys = [os.fspath(s) for s in sources]
        with self._writing():
            ids: set[int] = set()
            for key in keys:
                absolute = str(Path(key).expanduser().resolve()) if not key.startswith("text:") else key
                for value in {key, absolute}:
                    rows = self.conn.execute(
                        "SELECT id FROM documents WHERE source = ? OR path = ? OR path LIKE ? ESCAPE '\\'",
                        (value, value, files.like_prefix(value)),
                    )
                    ids.update(r[0] for r in rows)
            self._delete_ids(sorted(ids))
        return len(ids)

    def _delete_ids(self, document_ids: list[int]) -> None:
        if not document_ids:
            return
        with db.Transaction(self.conn) as conn:
            removed = db.delete_documents(conn, document_ids)
            paths = {r[0] for r in conn.execute("SELECT path FROM files")}
            live = {r[0] for r in conn.execute("SELECT DISTINCT path FROM documents WHERE path IS NOT NULL")}
            conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths - live])
        self._index_changed([], np.empty((0, self.dim), np.float32), removed)

    # -- reading ----------------------------------------------------------------------------

    def documents(self) -> Iterator[StoredDocument]:
        """Every document in insertion order, its text rebuilt from its chunks (for clustering, export)."""
        with self._lock:
            rows = list(db.iter_documents(self.conn))
        for (_, source, path, title, metadata), chunks in rows:
            yield StoredDocument(source, path, title, json.loads(metadata), stitch(chunks))

    def search(
        self, query: str, k: int = 10, mode: str = "hybrid", filters: dict[str, Any] | None = None
    ) -> list[Hit]:
        """Top ``k`` chunks for ``query``: mode ``dense``, ``keyword`` (BM25) or ``hybrid`` (RRF of both)."""
        from gemvec.tasks.search import search

        with self._lock:
            return search(self, query, k=k, mode=mode, filters=filters)

    def ask(
        self,
        question: str,
        generator: Generator | str | None = None,
        *,
        k: int = 4,
        mode: str = "hybrid",
        filters: dict[str, Any] | None = None,
        stream: bool = False,
        max_tokens: int = 512,
        temperature: float = 0.0,
    ) -> Answer | AnswerStream:
        """Answer from the collection with numbered citations (see :func:`gemvec.tasks.rag.ask`)."""
        from gemvec.tasks.rag import ask

        return ask(
            self,
            question,
            generator,
            k=k,
            mode=mode,
            filters=filters,
            stream=stream,
            max_tokens=max_tokens,
            temperature=temperature,
        )

    def info(self) -> dict[str, Any]:
        documents = self.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        kind = self._spec.for_size(chunks).kind
        return {
            "name": self.name,
            "path": str(self.folder),
            "documents": documents,
            "chunks": chunks,
            "model": self.settings["model"],
            "model_id": self.settings["model_id"],
            "dim": self.dim,
            "precision": self.precision.value,
            "index": f"{kind}-{self.precision.value}" if kind == "hnsw" else f"exact-{self.precision.value}",
            "chunk_tokens": self.chunk_tokens,
            "overlap": self.overlap,
            "roots": [r["path"] for r in json.loads(self.settings.get("roots", "[]"))],
            "size_bytes": sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file()),
        }


def delete_collection(name_or_path: str | os.PathLike[str]) -> Path:
    """Remove a collection folder (only if it holds a gemvec database); return its path."""
    folder = resolve_collection(name_or_path)
    if not (folder / DB_FILE).is_file():
        raise CollectionError(f"No collection at {folder}.")
    shutil.rmtree(folder)
    return folder


def _load_embedder(model: str | None, precision: str | None) -> Embedder:
    from gemvec.embedder import Embedder

    return Embedder.load(model, precision)
