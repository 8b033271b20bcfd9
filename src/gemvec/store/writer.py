"""Turn source documents into committed rows: dedup, chunk, embed, and write batch by batch.

Each batch is embedded first and then written in one SQLite transaction (documents, chunks,
vectors, FTS rows, and the removal of the versions they replace), so an interruption at any
moment leaves whole documents only. The FAISS index follows after each commit.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from gemvec.ingest.chunking import Chunk, chunk_text
from gemvec.ingest.loaders import SourceDocument
from gemvec.store.db import ChunkRow, DocumentRow, Transaction, delete_documents, insert_document

if TYPE_CHECKING:
    from gemvec.store.collection import Collection

ProgressFn = Callable[[int, int], None]  # (chunks embedded so far, chunks to embed)
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


@dataclass
class _Pending:
    doc: SourceDocument
    hash: str
    chunks: list[Chunk]
    replaces: int | None  # id of the older version of this document


def content_hash(doc: SourceDocument) -> str:
    return hashlib.sha256(f"{doc.title or ''}\0{doc.text}".encode()).hexdigest()


def plan(collection: Collection, docs: list[SourceDocument], report: IngestReport) -> list[_Pending]:
    """What needs embedding: new or changed documents, minus exact duplicates; chunked."""
    conn = collection.conn
    tokenizer = collection.embedder.tokenizer
    pending: list[_Pending] = []
    seen: set[str] = set()
    for doc in docs:
        digest = content_hash(doc)
        row = conn.execute("SELECT id, hash FROM documents WHERE source = ?", (doc.source,)).fetchone()
        if row is not None and row[1] == digest:
            report.unchanged += 1
            continue
        elsewhere = conn.execute(
            "SELECT 1 FROM documents WHERE hash = ? AND source != ? LIMIT 1", (digest, doc.source)
        ).fetchone()
        if digest in seen or elsewhere:
            report.duplicates += 1
            continue
        seen.add(digest)
        chunks = chunk_text(doc.text, tokenizer, collection.chunk_tokens, collection.overlap)
        if chunks:
            pending.append(_Pending(doc, digest, chunks, row[0] if row else None))
    return pending


def write(
    collection: Collection,
    pending: list[_Pending],
    report: IngestReport,
    progress: ProgressFn | None = None,
    batch_chunks: int = BATCH_CHUNKS,
    batch_size: int = 32,
) -> None:
    """Embed and commit ``pending`` in batches of about ``batch_chunks`` chunks."""
    total = sum(len(p.chunks) for p in pending)
    done = 0
    if progress:
        progress(0, total)
    batch: list[_Pending] = []
    for item in pending:
        batch.append(item)
        if sum(len(p.chunks) for p in batch) >= batch_chunks:
            done += _flush(collection, batch, report, batch_size)
            batch = []
            if progress:
                progress(done, total)
    if batch:
        done += _flush(collection, batch, report, batch_size)
        if progress:
            progress(done, total)


def _flush(collection: Collection, batch: list[_Pending], report: IngestReport, batch_size: int) -> int:
    texts = [c.text for p in batch for c in p.chunks]
    titles = [p.doc.title for p in batch for c in p.chunks]
    vectors = collection.embedder.encode_document(
        texts, titles=titles, dim=collection.encode_dim, batch_size=batch_size, show_progress=False
    )
    rows, offset = [], 0
    for p in batch:
        n = len(p.chunks)
        chunk_rows = [
            ChunkRow(c.position, c.start, c.end, c.n_tokens, c.text, vectors[offset + i])
            for i, c in enumerate(p.chunks)
        ]
        rows.append(DocumentRow(p.doc.source, p.doc.path, p.doc.title, p.hash, p.doc.metadata, chunk_rows))
        offset += n
    now = time.time()
    new_ids: list[int] = []
    with Transaction(collection.conn) as conn:
        removed = delete_documents(conn, [p.replaces for p in batch if p.replaces is not None])
        for row in rows:
            new_ids += insert_document(conn, row, now)
    collection._index_changed(new_ids, vectors, removed)
    for p in batch:
        if p.replaces is None:
            report.added += 1
        else:
            report.updated += 1
    report.chunks += len(texts)
    return len(texts)
