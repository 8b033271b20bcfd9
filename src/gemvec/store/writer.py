"""Turn source documents into committed rows: dedup, chunk, embed, and write batch by batch.

Each batch is embedded first and then written in one SQLite transaction (documents, chunks,
vectors, FTS rows, and the removal of the versions they replace), so an interruption at any
moment leaves whole documents, or the leading chunks of a long document that is marked
incomplete and resumed after its last committed chunk by the next run. :func:`write` yields a
:class:`Change` after each commit, which the collection applies to its FAISS index.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from sqlite3 import Connection
from typing import TYPE_CHECKING

import numpy as np

from gemvec.errors import InputError
from gemvec.ingest.chunking import Chunk, chunk_text
from gemvec.ingest.loaders import SourceDocument
from gemvec.store import db
from gemvec.store.db import ChunkRow, DocumentRow, Transaction
from gemvec.store.live_index import Change

if TYPE_CHECKING:
    from gemvec.tokenizer import TextTokenizer

ProgressFn = Callable[[int, int], None]  # (chunks embedded so far, chunks to embed)
EmbedFn = Callable[[list[str], list[str | None]], np.ndarray]  # (chunk texts, titles) -> vectors
BATCH_CHUNKS = 64


@dataclass
class IngestReport:
    added: int = 0  # new documents
    updated: int = 0  # documents whose content changed, re-embedded
    unchanged: int = 0
    duplicates: int = 0  # same content as a document already in the collection
    removed: int = 0  # documents deleted (sync, or rows gone from a changed file)
    chunks: int = 0  # chunks embedded
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)

    def to_dict(self) -> dict:
        return asdict(self)

    def merge(self, other: IngestReport) -> None:
        """Add ``other``'s counts and failures to this report."""
        for key, value in other.to_dict().items():
            setattr(self, key, getattr(self, key) + value)


@dataclass
class _Pending:
    doc: SourceDocument
    hash: str
    chunks: list[Chunk]
    replaces: int | None  # id of the older version of this document, deleted with the first slice
    document_id: int | None = None  # set once its row exists (a resumed document has one already)
    done: int = 0  # chunks already committed


@dataclass
class _Slice:
    item: _Pending
    start: int
    end: int


def content_hash(doc: SourceDocument) -> str:
    return hashlib.sha256(f"{doc.title or ''}\0{doc.text}".encode()).hexdigest()


@dataclass
class Plan:
    """What an ingest must do: documents to embed, and what the duplicates among the input mean."""

    pending: list[_Pending] = field(default_factory=list)
    duplicate_sources: set[str] = field(default_factory=set)  # skipped: same content stored elsewhere
    obsolete: list[int] = field(default_factory=list)  # old versions whose new content is a duplicate


def plan(
    conn: Connection,
    docs: Sequence[SourceDocument],
    report: IngestReport,
    tokenizer: TextTokenizer,
    chunk_tokens: int,
    overlap: int,
) -> Plan:
    """What needs embedding: new, changed or half-committed documents, minus exact duplicates; chunked.

    A duplicate is stored once, under the source seen first; the caller must not record the
    duplicate's file as done, so that it is read again (and stored) once the original is gone.
    """
    out = Plan()
    seen: set[str] = set()
    for doc in docs:
        digest = content_hash(doc)
        row = conn.execute(
            "SELECT id, hash, complete FROM documents WHERE source = ?", (doc.source,)
        ).fetchone()
        if row is not None and row[1] == digest:
            if row[2]:
                report.unchanged += 1
            else:  # interrupted mid-document: carry on after its committed chunks
                seen.add(digest)
                chunks = chunk_text(doc.text, tokenizer, chunk_tokens, overlap)
                resumed = _Pending(doc, digest, chunks, None, row[0], db.committed_chunks(conn, row[0]))
                out.pending.append(resumed)
            continue
        elsewhere = conn.execute(
            "SELECT 1 FROM documents WHERE hash = ? AND source != ? LIMIT 1", (digest, doc.source)
        ).fetchone()
        if digest in seen or elsewhere:
            report.duplicates += 1
            out.duplicate_sources.add(doc.source)
            if row is not None:
                out.obsolete.append(row[0])
            continue
        seen.add(digest)
        chunks = chunk_text(doc.text, tokenizer, chunk_tokens, overlap)
        if chunks:
            out.pending.append(_Pending(doc, digest, chunks, row[0] if row else None))
    return out


def _slices(pending: list[_Pending], batch_chunks: int) -> Iterator[list[_Slice]]:
    """Batches of at most ``batch_chunks`` chunks. A document that fits in a batch stays whole; a
    longer one is cut across batches, so it is committed (and resumable) as it goes."""
    batch: list[_Slice] = []
    size = 0
    for item in pending:
        if size and size + len(item.chunks) - item.done > batch_chunks:
            yield batch
            batch, size = [], 0
        start = item.done
        while start < len(item.chunks):
            end = min(len(item.chunks), start + batch_chunks - size)
            batch.append(_Slice(item, start, end))
            size += end - start
            start = end
            if size >= batch_chunks:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def write(
    conn: Connection,
    embed: EmbedFn,
    pending: list[_Pending],
    report: IngestReport,
    progress: ProgressFn | None = None,
    batch_chunks: int | None = None,
) -> Iterator[Change]:
    """Embed and commit ``pending`` in batches of at most ``batch_chunks`` (default
    :data:`BATCH_CHUNKS`) chunks; yield each commit."""
    batch_chunks = batch_chunks or BATCH_CHUNKS
    total = sum(len(p.chunks) - p.done for p in pending)
    done = 0
    if progress:
        progress(0, total)
    for batch in _slices(pending, batch_chunks):
        yield _flush(conn, embed, batch, report)
        done += sum(s.end - s.start for s in batch)
        if progress:
            progress(done, total)


def _flush(conn: Connection, embed: EmbedFn, batch: list[_Slice], report: IngestReport) -> Change:
    texts = [c.text for s in batch for c in s.item.chunks[s.start : s.end]]
    titles = [s.item.doc.title for s in batch for _ in range(s.start, s.end)]
    vectors = embed(texts, titles)
    broken = ~np.isfinite(vectors).all(axis=1)
    if broken.any():
        sources = sorted({s.item.doc.source for s in batch})
        raise InputError(
            f"The model returned non-finite values for {int(broken.sum())} chunk(s) of "
            f"{', '.join(sources[:3])}; nothing of this batch was stored. Try --precision float32."
        )
    now = time.time()
    new_ids: list[int] = []
    removed: list[int] = []
    offset = 0
    with Transaction(conn):
        for s in batch:
            item, doc = s.item, s.item.doc
            finished = s.end == len(item.chunks)
            if item.document_id is None:
                if item.replaces is not None:
                    removed += db.delete_documents(conn, [item.replaces])
                row = DocumentRow(doc.source, doc.path, doc.title, item.hash, doc.metadata)
                item.document_id = db.insert_document(conn, row, len(item.chunks), now, complete=finished)
            elif finished:
                db.mark_complete(conn, item.document_id, len(item.chunks))
            rows = [
                ChunkRow(c.position, c.start, c.end, c.n_tokens, c.text, vectors[offset + i])
                for i, c in enumerate(item.chunks[s.start : s.end])
            ]
            new_ids += db.insert_chunks(conn, item.document_id, doc.title, rows)
            offset += len(rows)
    for s in batch:
        s.item.done = s.end
        if s.end == len(s.item.chunks):
            if s.item.replaces is None:
                report.added += 1
            else:
                report.updated += 1
    report.chunks += len(texts)
    return Change(np.asarray(new_ids, dtype=np.int64), vectors, removed)
