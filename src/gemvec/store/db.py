"""The collection's SQLite database: the source of truth for documents, chunks and vectors.

Every chunk row carries its float32 vector, so the FAISS index can always be rebuilt or
checked from here. Keyword search uses an FTS5 table whose rowid is the chunk id.
Schema changes are numbered migrations (``PRAGMA user_version``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIGRATIONS: list[str] = [
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL UNIQUE,      -- path, path#row-id for JSONL/CSV rows, or a caller's id
        path TEXT,                        -- the file it came from (NULL for texts added directly)
        title TEXT,
        hash TEXT NOT NULL,               -- sha256 of title + text: unchanged content is skipped
        metadata TEXT NOT NULL DEFAULT '{}',
        n_chunks INTEGER NOT NULL,
        added_at REAL NOT NULL
    );
    CREATE INDEX documents_path ON documents(path);
    CREATE INDEX documents_hash ON documents(hash);
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, so a stale index id never aliases
        document_id INTEGER NOT NULL REFERENCES documents(id),
        position INTEGER NOT NULL,        -- 0-based chunk number within the document
        start INTEGER NOT NULL,           -- character offsets into the document text
        end INTEGER NOT NULL,
        n_tokens INTEGER NOT NULL,
        text TEXT NOT NULL,
        vector BLOB NOT NULL              -- float32, the collection's dim
    );
    CREATE INDEX chunks_document ON chunks(document_id);
    CREATE VIRTUAL TABLE chunks_fts USING fts5(text, title, tokenize = 'unicode61 remove_diacritics 2');
    CREATE TABLE files (path TEXT PRIMARY KEY, hash TEXT NOT NULL);
    """,
    # A long document is committed in slices of chunks; until the last one it is incomplete,
    # and an interrupted ingest resumes after its last committed chunk.
    """
    ALTER TABLE documents ADD COLUMN complete INTEGER NOT NULL DEFAULT 1;
    """,
]


def connect(path: Path) -> sqlite3.Connection:
    """Open (and migrate) the database. WAL: readers never block the writer, commits survive kill -9."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    return conn


class Transaction:
    """``with Transaction(conn):`` — BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def get_settings(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM settings").fetchall())


def set_settings(conn: sqlite3.Connection, values: dict[str, object]) -> None:
    conn.executemany(
        "INSERT INTO settings(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()],
    )


@dataclass
class ChunkRow:
    position: int
    start: int
    end: int
    n_tokens: int
    text: str
    vector: np.ndarray


@dataclass
class DocumentRow:
    source: str
    path: str | None
    title: str | None
    hash: str
    metadata: dict = field(default_factory=dict)


def insert_document(
    conn: sqlite3.Connection, doc: DocumentRow, n_chunks: int, now: float, complete: bool = True
) -> int:
    """Insert one document and its chunks (inside the caller's transaction); return the document id.

    ``complete=False`` marks a document whose remaining chunks follow in later transactions
    (:func:`insert_chunks`, then :func:`mark_complete`).
    """
    cur = conn.execute(
        "INSERT INTO documents(source, path, title, hash, metadata, n_chunks, added_at, complete) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (
            doc.source,
            doc.path,
            doc.title,
            doc.hash,
            json.dumps(doc.metadata, ensure_ascii=False),
            n_chunks,
            now,
            int(complete),
        ),
    )
    return int(cur.lastrowid)


def insert_chunks(
    conn: sqlite3.Connection, document_id: int, title: str | None, chunks: Sequence[ChunkRow]
) -> list[int]:
    """Insert chunks of a document with their FTS rows (inside the caller's transaction); return their ids."""
    ids = []
    for chunk in chunks:
        cur = conn.execute(
            "INSERT INTO chunks(document_id, position, start, end, n_tokens, text, vector) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                document_id,
                chunk.position,
                chunk.start,
                chunk.end,
                chunk.n_tokens,
                chunk.text,
                np.ascontiguousarray(chunk.vector, dtype=np.float32).tobytes(),
            ),
        )
        ids.append(cur.lastrowid)
        conn.execute(
            "INSERT INTO chunks_fts(rowid, text, title) VALUES (?, ?, ?)",
            (cur.lastrowid, chunk.text, title or ""),
        )
    return ids


def mark_complete(conn: sqlite3.Connection, document_id: int, n_chunks: int) -> None:
    conn.execute("UPDATE documents SET complete = 1, n_chunks = ? WHERE id = ?", (n_chunks, document_id))


def committed_chunks(conn: sqlite3.Connection, document_id: int) -> int:
    """How many leading chunks of an incomplete document are committed (positions 0..n-1)."""
    row = conn.execute("SELECT COUNT(*) FROM chunks WHERE document_id = ?", (document_id,)).fetchone()
    return int(row[0])


def delete_documents(conn: sqlite3.Connection, document_ids: Sequence[int]) -> list[int]:
    """Delete documents and their chunks (inside the caller's transaction); return the removed chunk ids."""
    removed: list[int] = []
    for start in range(0, len(document_ids), 500):
        part = list(document_ids[start : start + 500])
        marks = ",".join("?" * len(part))
        chunk_ids = [
            r[0] for r in conn.execute(f"SELECT id FROM chunks WHERE document_id IN ({marks})", part)
        ]
        for c in range(0, len(chunk_ids), 500):
            cpart = chunk_ids[c : c + 500]
            conn.execute(f"DELETE FROM chunks_fts WHERE rowid IN ({','.join('?' * len(cpart))})", cpart)
        conn.execute(f"DELETE FROM chunks WHERE document_id IN ({marks})", part)
        conn.execute(f"DELETE FROM documents WHERE id IN ({marks})", part)
        removed += chunk_ids
    if removed:
        bump_epoch(conn)
    return removed


def bump_epoch(conn: sqlite3.Connection) -> None:
    """Count deletions: an index saved under an older epoch may hold removed ids and is rebuilt."""
    conn.execute(
        "INSERT INTO settings(key, value) VALUES ('epoch', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def iter_documents(conn: sqlite3.Connection) -> Iterator[tuple[tuple, list[tuple[int, int, str]]]]:
    """Each document row (id, source, path, title, metadata) with its chunks (start, end, text) in order."""
    documents = conn.execute("SELECT id, source, path, title, metadata FROM documents ORDER BY id").fetchall()
    for row in documents:
        chunks = conn.execute(
            "SELECT start, end, text FROM chunks WHERE document_id = ? ORDER BY position", (row[0],)
        ).fetchall()
        yield row, chunks


def read_vectors(conn: sqlite3.Connection, ids: Iterable[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) for the chunk ids that still exist, in the order found."""
    ids = [int(i) for i in ids]
    found_ids: list[int] = []
    blobs: list[bytes] = []
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        rows = conn.execute(f"SELECT id, vector FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)
        for chunk_id, blob in rows:
            found_ids.append(chunk_id)
            blobs.append(blob)
    return _stack(found_ids, blobs, dim)


def iter_vectors(
    conn: sqlite3.Connection, dim: int, after_id: int = 0, batch: int = 50_000
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """All (ids, vectors) with id > after_id, in id order, ``batch`` rows at a time."""
    last = after_id
    while True:
        rows = conn.execute(
            "SELECT id, vector FROM chunks WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
        ).fetchall()
        if not rows:
            return
        last = rows[-1][0]
        yield _stack([r[0] for r in rows], [r[1] for r in rows], dim)


def _stack(ids: list[int], blobs: list[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = (
        np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), dim)
        if ids
        else np.empty((0, dim), np.float32)
    )
    return np.asarray(ids, dtype=np.int64), vectors
