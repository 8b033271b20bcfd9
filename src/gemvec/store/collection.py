"""Collection: a folder with a SQLite database (the truth) and a FAISS index (a verified cache).

coll = Collection.create("notes", dim=256)           # or Collection.open("./somewhere")
coll.add(["~/notes"], include=["*.md"])              # chunk, embed, commit batch by batch
coll.sync()                                          # re-embed changed files, drop deleted ones
hits = coll.search("how do I ...", k=5, mode="hybrid")
answer = coll.ask("how do I ...", make_generator("smollm2"))

The collection owns its storage and search: the writer and the file scanner return what they
committed or what should go, and only this class changes the index (:mod:`live_index`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gemvec.errors import CollectionLockedError, CollectionMismatchError, CollectionNotFoundError, GemvecError
from gemvec.ingest.loaders import SourceDocument, TableOptions
from gemvec.ingest.walk import find_files, resolve_path
from gemvec.store import db, files, search, writer
from gemvec.store.creation import create_database, open_database
from gemvec.store.failures import guarded, storage_errors
from gemvec.store.identity import check_same, model_id, verify_model
from gemvec.store.live_index import Change, LiveIndex
from gemvec.store.lock import WriteLock
from gemvec.store.options import resolve_options
from gemvec.store.paths import DB_FILE, resolve_collection
from gemvec.store.search import Hit
from gemvec.store.vectors import IndexSpec, VectorIndex, parse_index_choice, parse_vector_precision

if TYPE_CHECKING:
    from gemvec.embedder import Embedder
    from gemvec.llm.base import Generator
    from gemvec.rag import Answer, AnswerStream

# Re-embedding a stored chunk with the same weights gives cosine ~1 (int4 compute against a
# float32-built collection still > 0.9); another fine-tune of the same shapes falls below.
MIGRATION_MIN_COSINE = 0.9
log = logging.getLogger("gemvec.store")


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
        self,
        folder: Path,
        conn,
        settings: dict[str, str],
        embedder: Embedder | None = None,
        *,
        model: str | None = None,
        precision: str | None = None,
    ) -> None:
        self.folder = folder
        self.conn = conn
        self.settings = settings
        self.dim = int(settings["dim"])
        self.vectors = parse_vector_precision(settings["precision"])
        self.chunk_tokens = int(settings["chunk_tokens"])
        self.overlap = int(settings["overlap"])
        spec = IndexSpec(self.dim, self.vectors, choice=settings.get("index", "auto"))
        self._index = LiveIndex(conn, folder, spec)
        self._model = model  # loaded lazily: the collection's own model unless overridden
        self._precision = precision  # compute precision to load it at (None: the CPU's default)
        self._embedder: Embedder | None = None
        self._write_lock = WriteLock(folder)
        self._lock = threading.RLock()  # one connection shared by threads (e.g. the HTTP server)
        if embedder is not None:
            self._set_embedder(embedder)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def precision(self):
        """Deprecated: the stored vector precision is :attr:`vectors`."""
        return self.vectors

    # -- creating and opening ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        model: str | None = None,
        embedder: Embedder | None = None,
        dim: int | None = None,
        vectors: str | None = None,
        precision: str | None = None,
        chunk_tokens: int = 256,
        overlap: int = 32,
        exist_ok: bool = False,
        index: str | None = None,
        **deprecated: Any,
    ) -> Collection:
        """A new, empty collection (or the existing one with ``exist_ok``).

        ``vectors``: how vectors are stored and indexed (float32, int8 or binary); ``precision``:
        the model's compute precision (float32, bfloat16, int8, int4, int8-dynamic), as in ``Embedder.load``.
        ``index``: ``auto`` (default: exact, HNSW past 50,000 chunks, IVF on disk once HNSW would
        keep 5 GiB of vectors in RAM: 5.2M chunks at 256 dims), ``flat``, ``hnsw``, ``ivf`` (lists
        sized by the collection) or an IVF factory string such as ``IVF4096,PQ32`` (BENCHMARKS.md).
        """
        options = resolve_options(vectors, precision, deprecated, "create")
        folder = resolve_collection(name_or_path)
        if (folder / DB_FILE).exists() and exist_ok:
            out = cls.open(folder, model=model, embedder=embedder, dim=dim, **options.open_kwargs())
            built = out.settings.get("index", "auto")
            if index is not None and parse_index_choice(index, out.dim, out.vectors) != built:
                out.close()
                raise CollectionMismatchError(
                    f"Collection {folder.name} was created with index {built}, not {index}: the index "
                    "kind is chosen at creation. Open it without an index, or index into a new collection."
                )
            return out
        embedder = embedder or _load_embedder(model, options.precision)
        from gemvec.embedder import check_dim

        dim = check_dim(dim, embedder.dim)
        index_choice = parse_index_choice(index, dim, options.vectors)
        settings = {
            "model": embedder.model_name,
            "model_path": str(embedder.folder or ""),
            "model_id": model_id(embedder),
            "dim": str(dim),
            "precision": options.vectors.value,
            "compute_precision": str(getattr(embedder.precision, "value", embedder.precision)),
            "chunk_tokens": str(chunk_tokens),
            "overlap": str(overlap),
            "index": index_choice,
            "epoch": "0",
            "roots": "[]",
        }
        conn, created = create_database(folder, settings, exist_ok=exist_ok)
        out = cls(folder, conn, db.get_settings(conn))
        if not created:  # another process created it first
            out._model = model
            check_same(folder.name, "dim", out.dim, dim, "open it without --dim, or use a new collection.")
        out._set_embedder(embedder)
        return out

    @classmethod
    def open(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        model: str | None = None,
        embedder: Embedder | None = None,
        dim: int | None = None,
        vectors: str | None = None,
        precision: str | None = None,
        **deprecated: Any,
    ) -> Collection:
        """An existing collection; another dim or vector precision than it was built with is refused.

        The embedding model loads on first use: ``embedder`` if given, else ``model``, else the
        one the collection was built with, at compute ``precision``; a different model is refused.
        """
        options = resolve_options(vectors, precision, deprecated, "open")
        folder = resolve_collection(name_or_path)
        if not (folder / DB_FILE).is_file():
            raise CollectionNotFoundError(
                f"No collection at {folder}. Create it with `gemvec index PATH -c {name_or_path}`."
            )
        conn, settings = open_database(folder)
        hint = "open it without these options, or index into a new collection."
        check_same(folder.name, "dim", settings["dim"], dim, hint)
        if options.vectors_given:
            check_same(folder.name, "vector precision", settings["precision"], options.vectors.value, hint)
        return cls(folder, conn, settings, embedder, model=model, precision=options.precision)

    @property
    def encode_dim(self) -> int | None:
        """The ``dim`` to pass to the embedder: None when the collection keeps the model's full size."""
        return None if self.dim == self.embedder.dim else self.dim

    @property
    def embedder(self) -> Embedder:
        """The embedding model: loaded on first use, checked against the one the collection was built with."""
        if self._embedder is None:
            model = self._model
            if model is None:
                stored = self.settings.get("model_path") or ""
                model = stored if stored and Path(stored).is_dir() else self.settings["model"]
            self._set_embedder(_load_embedder(model, self._precision))
        assert self._embedder is not None
        return self._embedder

    def _set_embedder(self, embedder: Embedder) -> None:
        migrated = verify_model(self.settings["model_id"], self.settings["model"], self.name, embedder)
        if migrated is not None:  # built before content fingerprints: check a vector, store the new id
            self._check_stored_vector(embedder)
            with db.Transaction(self.conn):
                db.set_settings(self.conn, {"model_id": migrated})
            self.settings = db.get_settings(self.conn)
        self._embedder = embedder

    def _check_stored_vector(self, embedder: Embedder) -> None:
        """Old ids hashed only the checkpoint's headers, blind to a fine-tune of the same shapes:
        before trusting one, re-embed the first stored chunk and compare it with its stored vector."""
        row = self.conn.execute(
            "SELECT c.text, d.title, c.vector FROM chunks c JOIN documents d ON d.id = c.document_id "
            "ORDER BY c.id LIMIT 1"
        ).fetchone()
        if row is None:
            return
        dim = None if self.dim == embedder.dim else self.dim
        fresh = embedder.encode_document([row[0]], titles=[row[1]], dim=dim, show_progress=False)[0]
        cosine = float(fresh @ np.frombuffer(row[2], dtype=np.float32))
        if cosine < MIGRATION_MIN_COSINE:
            raise CollectionMismatchError(
                f"Collection {self.name} was built with another model than {embedder.model_name}: a stored "
                f"chunk embeds at cosine {cosine:.3f} to its stored vector. Load {self.settings['model']}, "
                "or index into a new collection."
            )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the index and the write lock --------------------------------------------------------

    @property
    def index(self) -> VectorIndex:
        """The FAISS index, verified against the database and caught up with other writers' commits."""
        with self._lock:
            locked_here = False

            def try_lock() -> bool:
                nonlocal locked_here
                locked_here = not self._write_lock.held and self._write_lock.acquire()
                return self._write_lock.held

            try:
                return self._index.current(try_lock)
            finally:
                if locked_here:
                    self._write_lock.release()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time (a lock file the OS releases even on kill -9); save the index at the end."""
        with self._lock:
            if not self._write_lock.acquire():
                raise CollectionLockedError(
                    f"Collection {self.name} is being written by another process; try again when it is done."
                )
            failed = True
            try:
                with storage_errors(self.folder):
                    _ = self.index
                    yield
                failed = False
            finally:
                try:
                    self._save_after_write(quiet=failed)
                finally:
                    self._write_lock.release()

    def _save_after_write(self, quiet: bool) -> None:
        """Save the index; when the write itself failed, a save error must not hide the first one."""
        try:
            with storage_errors(self.folder):
                self._index.save()
        except (GemvecError, OSError) as exc:
            if not quiet:
                raise
            log.warning("could not save the index of %s after a failed write: %s", self.folder, exc)

    def _delete_documents(self, document_ids: list[int]) -> None:
        """Delete documents, their chunks and their files' records (the caller holds the write lock)."""
        if not document_ids:
            return
        with db.Transaction(self.conn) as conn:
            removed = db.delete_documents(conn, document_ids)
            paths = {r[0] for r in conn.execute("SELECT path FROM files")}
            live = {r[0] for r in conn.execute("SELECT DISTINCT path FROM documents WHERE path IS NOT NULL")}
            conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths - live])
        self._index.apply(Change(removed=removed))

    def _ingest(
        self, docs: list[SourceDocument], report: writer.IngestReport, options: dict[str, Any]
    ) -> set[str]:
        """Embed and commit ``docs``; return the sources skipped as duplicates of stored documents."""
        plan = writer.plan(self.conn, docs, report, self.embedder.tokenizer, self.chunk_tokens, self.overlap)
        batch_size = options.get("batch_size", 32)

        def embed_here(texts: list[str], titles: list[str | None]) -> np.ndarray:
            return self.embedder.encode_document(
                texts, titles=titles, dim=self.encode_dim, batch_size=batch_size, show_progress=False
            )

        embed: writer.EmbedFn = embed_here
        if options.get("embed_documents") is not None:  # given every chunk to embed, in the writer's order
            texts = [chunk.text for p in plan.pending for chunk in p.chunks[p.done :]]
            titles = [p.doc.title for p in plan.pending for _ in p.chunks[p.done :]]
            embed = options["embed_documents"](texts, titles)

        self._delete_documents(plan.obsolete)
        report.removed += len(plan.obsolete)
        for change in writer.write(self.conn, embed, plan.pending, report, options.get("progress")):
            self._index.apply(change)
        return plan.duplicate_sources

    # -- writing ----------------------------------------------------------------------------

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
        embed_documents: Callable[[list[str], list[str | None]], writer.EmbedFn] | None = None,
        remember: bool = True,
    ) -> writer.IngestReport:
        """Ingest files and folders (recursively). Unchanged files and documents are skipped.

        ``remove_missing``: also delete documents under these paths whose files are gone (sync).
        ``remember``: record ``paths`` as roots that a later ``sync()`` redoes (a watcher applying
        single changed files under a root it already recorded passes False).
        Unreadable files are reported in ``IngestReport.failed`` and do not stop the others.
        ``embed_documents``: embed elsewhere than with this collection's model (e.g. on a Ray
        cluster: :mod:`gemvec.distributed`). Called once with every chunk text and title to embed,
        in order, it returns the ``embed(texts, titles) -> vectors`` the writer then calls batch
        by batch with those chunks in that order, so it can work ahead; vectors must be this
        collection's (same model, dim, normalised).
        """
        roots = [str(resolve_path(p)) for p in paths]
        found = find_files(roots, include, exclude)
        report = writer.IngestReport()
        with self._writing():
            if remove_missing:  # first, so a duplicate of a deleted file is stored in its place
                gone = files.missing_documents(self.conn, roots, {str(p) for p in found})
                self._delete_documents(gone)
                report.removed += len(gone)
            docs, markers = files.read_changed(self.conn, found, table, report)
            options = {"progress": progress, "batch_size": batch_size, "embed_documents": embed_documents}
            duplicates = self._ingest(docs, report, options)
            stale = files.stale_documents(self.conn, markers)
            self._delete_documents(stale)
            report.removed += len(stale)
            files.record_files(self.conn, markers, duplicates)
            if remember:
                known = self.settings.get("roots", "[]")
                files.remember_roots(self.conn, known, roots, include, exclude, table)
                self.settings = db.get_settings(self.conn)
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
                    gone = files.missing_documents(self.conn, [root["path"]], set())
                    self._delete_documents(gone)
                    part.removed += len(gone)
            else:
                part = self.add(
                    [root["path"]],
                    include=root["include"],
                    exclude=root["exclude"],
                    table=table,
                    remove_missing=True,
                    **options,
                )
            total.merge(part)
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
            self._ingest(docs, report, {"progress": progress})
        return report

    def delete(self, sources: Iterable[str | os.PathLike[str]]) -> int:
        """Delete documents by source id, file path, or every document under a folder; return how many."""
        keys = [os.fspath(s) for s in sources]
        with self._writing():
            ids: set[int] = set()
            for key in keys:
                absolute = str(resolve_path(key)) if not key.startswith("text:") else key
                for value in {key, absolute}:
                    rows = self.conn.execute(
                        "SELECT id FROM documents WHERE source = ? OR path = ? OR path LIKE ? ESCAPE '\\'",
                        (value, value, files.like_prefix(value)),
                    )
                    ids.update(r[0] for r in rows)
            self._delete_documents(sorted(ids))
        return len(ids)

    # -- reading ----------------------------------------------------------------------------

    @guarded
    def documents(self) -> Iterator[StoredDocument]:
        """Every document in insertion order, its text rebuilt from its chunks (for clustering, export)."""
        with self._lock:
            rows = list(db.iter_documents(self.conn))
        return (
            StoredDocument(source, path, title, json.loads(metadata), stitch(chunks))
            for (_, source, path, title, metadata), chunks in rows
        )

    @guarded
    def search(
        self, query: str, k: int = 10, mode: str = "hybrid", filters: dict[str, Any] | None = None
    ) -> list[Hit]:
        """Top ``k`` chunks for ``query``: mode ``dense``, ``keyword`` (BM25) or ``hybrid`` (RRF of both)."""
        search.check_query(query, k, mode)
        depth = k if mode != "hybrid" else search.hybrid_depth(k)
        rankings = []
        if mode in ("dense", "hybrid"):
            vector = self.embedder.encode_query([query], dim=self.encode_dim, show_progress=False)[0]
            with self._lock:
                rankings.append(search.dense(self.conn, self.index, vector, depth, filters))
        if mode in ("keyword", "hybrid"):
            with self._lock:
                rankings.append(search.keyword(self.conn, query, depth, filters))
        scored = rankings[0] if len(rankings) == 1 else search.rrf(rankings, k)
        with self._lock:
            return search.hydrate(self.conn, scored)

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
        answer_mode: str = "auto",
    ) -> Answer | AnswerStream:
        """Answer from the collection with numbered citations, checked against the sources:
        ``answer_mode`` auto (the LLM's answer when grounded, else a cited extract), generated or
        extractive (see :func:`gemvec.rag.ask`)."""
        from gemvec.rag import ask

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
            answer_mode=answer_mode,  # type: ignore[arg-type]
        )

    @guarded
    def count(self) -> tuple[int, int]:
        """(documents, chunks)."""
        with self._lock:
            documents = self.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            chunks = self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return documents, chunks

    @guarded
    def info(self) -> dict[str, Any]:
        documents, chunks = self.count()
        spec = IndexSpec(self.dim, self.vectors, choice=self.settings.get("index", "auto")).for_size(chunks)
        index = {"flat": f"exact-{self.vectors.value}", "hnsw": f"hnsw-{self.vectors.value}"}
        return {
            "name": self.name,
            "path": str(self.folder),
            "documents": documents,
            "chunks": chunks,
            "model": self.settings["model"],
            "model_id": self.settings["model_id"],
            "dim": self.dim,
            "precision": self.vectors.value,
            "index": index.get(spec.kind, f"ivf-{spec.factory}"),
            "index_setting": self.settings.get("index", "auto"),
            "chunk_tokens": self.chunk_tokens,
            "overlap": self.overlap,
            "roots": [r["path"] for r in json.loads(self.settings.get("roots", "[]"))],
            "size_bytes": sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file()),
        }


def _load_embedder(model: str | None, precision: str | None) -> Embedder:
    from gemvec.embedder import Embedder

    return Embedder.load(model, precision)
