"""The file side of ingest: which files changed, which vanished, and which folders to sync later.

These functions read and record; they return document ids to delete rather than deleting, so
the collection applies every change to its index in one place. A file's raw-bytes hash is
recorded only after all its documents are committed, so a file interrupted mid-way is read
again on the next run (its committed documents are then skipped by their content hash).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from sqlite3 import Connection

from gemvec.ingest.loaders import SourceDocument, TableOptions, load_file
from gemvec.store import db
from gemvec.store.writer import IngestReport

Marker = tuple[str, str, list[str]]  # (file path, file hash, sources it yielded)


def like_prefix(path: str) -> str:
    """A LIKE pattern (ESCAPE '\\') for everything under the folder ``path``."""
    escaped = path.rstrip("/").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "/%"


def read_changed(
    conn: Connection, paths: list[Path], table: TableOptions | None, report: IngestReport
) -> tuple[list[SourceDocument], list[Marker]]:
    """Documents of the files whose bytes changed since last recorded; unreadable files are reported."""
    known = dict(conn.execute("SELECT path, hash FROM files").fetchall())
    docs: list[SourceDocument] = []
    markers: list[Marker] = []
    for path in paths:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if known.get(str(path)) == digest:
                report.unchanged += conn.execute(
                    "SELECT COUNT(*) FROM documents WHERE path = ?", (str(path),)
                ).fetchone()[0]
                continue
            loaded = load_file(path, table)
        except Exception as exc:  # a bad or unreadable file must not stop the others
            report.failed.append((str(path), f"{type(exc).__name__}: {exc}"))
            continue
        docs += loaded
        markers.append((str(path), digest, [d.source for d in loaded]))
    return docs, markers


def stale_documents(conn: Connection, markers: list[Marker]) -> list[int]:
    """Ids of documents that vanished from changed JSONL/CSV files (rows no longer in them)."""
    stale: list[int] = []
    for path, _, sources in markers:
        wanted = set(sources)
        rows = conn.execute("SELECT id, source FROM documents WHERE path = ?", (path,)).fetchall()
        stale += [doc_id for doc_id, source in rows if source not in wanted]
    return stale


def record_files(conn: Connection, markers: list[Marker], skipped_sources: set[str]) -> None:
    """Record files as done, except those with a document skipped as a duplicate of another source.

    Such a file is read again next time, so its content is stored once the original is gone.
    """
    done = [(path, digest) for path, digest, sources in markers if skipped_sources.isdisjoint(sources)]
    with db.Transaction(conn):
        conn.executemany(
            "INSERT INTO files(path, hash) VALUES (?, ?) "
            "ON CONFLICT(path) DO UPDATE SET hash = excluded.hash",
            done,
        )
        conn.executemany(
            "DELETE FROM files WHERE path = ?",
            [(path,) for path, _, sources in markers if not skipped_sources.isdisjoint(sources)],
        )


def missing_documents(conn: Connection, roots: list[str], present: set[str]) -> list[int]:
    """Ids of documents under ``roots`` whose file is not in ``present``."""
    gone: list[int] = []
    for root in roots:
        rows = conn.execute(
            "SELECT id, path FROM documents WHERE path = ? OR path LIKE ? ESCAPE '\\'",
            (root, like_prefix(root)),
        )
        gone += [doc_id for doc_id, path in rows if path not in present]
    return gone


def remember_roots(
    conn: Connection,
    known_json: str,
    roots: list[str],
    include: Sequence[str],
    exclude: Sequence[str],
    table: TableOptions | None,
) -> None:
    """Store the folders and their options, so a later ``sync()`` without paths can redo them."""
    known = {r["path"]: r for r in json.loads(known_json or "[]")}
    for root in roots:
        known[root] = {
            "path": root,
            "include": list(include),
            "exclude": list(exclude),
            "table": dict(table.__dict__) if table else None,
        }
    with db.Transaction(conn):
        db.set_settings(conn, {"roots": json.dumps(list(known.values()))})
