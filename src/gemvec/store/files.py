"""The file side of ingest: which files changed, which vanished, and which folders to sync later.

A file's raw-bytes hash is recorded only after all its documents are committed, so a file
interrupted mid-way is read again on the next run (its committed documents are then skipped
by their content hash).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gemvec.ingest.loaders import SourceDocument, TableOptions, load_file
from gemvec.store import db
from gemvec.store.writer import IngestReport

if TYPE_CHECKING:
    from gemvec.store.collection import Collection

Marker = tuple[str, str, list[str]]  # (file path, file hash, sources it yielded)


def like_prefix(path: str) -> str:
    """A LIKE pattern (ESCAPE '\\') for everything under the folder ``path``."""
    escaped = path.rstrip("/").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "/%"


def read_changed(
    coll: Collection, paths: list[Path], table: TableOptions | None, report: IngestReport
) -> tuple[list[SourceDocument], list[Marker]]:
    """Documents of the files whose bytes changed since last recorded; unreadable files are reported."""
    known = dict(coll.conn.execute("SELECT path, hash FROM files").fetchall())
    docs: list[SourceDocument] = []
    markers: list[Marker] = []
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if known.get(str(path)) == digest:
            report.unchanged += coll.conn.execute(
                "SELECT COUNT(*) FROM documents WHERE path = ?", (str(path),)
            ).fetchone()[0]
            continue
        try:
            loaded = load_file(path, table)
        except Exception as exc:  # a bad file must not stop the others
            report.failed.append((str(path), f"{type(exc).__name__}: {exc}"))
            continue
        docs += loaded
        markers.append((str(path), digest, [d.source for d in loaded]))
    return docs, markers


def finish_files(coll: Collection, markers: list[Marker], report: IngestReport) -> None:
    """Record files as done and drop rows that vanished from changed JSONL/CSV files."""
    stale: list[int] = []
    for path, _, sources in markers:
        wanted = set(sources)
        rows = coll.conn.execute("SELECT id, source FROM documents WHERE path = ?", (path,)).fetchall()
        stale += [doc_id for doc_id, source in rows if source not in wanted]
    report.removed += len(stale)
    coll._delete_ids(stale)
    with db.Transaction(coll.conn) as conn:
        conn.executemany(
            "INSERT INTO files(path, hash) VALUES (?, ?) "
            "ON CONFLICT(path) DO UPDATE SET hash = excluded.hash",
            [(path, digest) for path, digest, _ in markers],
        )


def remove_missing(coll: Collection, roots: list[str], present: set[str], report: IngestReport) -> None:
    """Delete documents under ``roots`` whose file is not in ``present``."""
    gone: list[int] = []
    for root in roots:
        rows = coll.conn.execute(
            "SELECT id, path FROM documents WHERE path = ? OR path LIKE ? ESCAPE '\\'",
            (root, like_prefix(root)),
        )
        gone += [doc_id for doc_id, path in rows if path not in present]
    report.removed += len(gone)
    coll._delete_ids(gone)


def remember_roots(
    coll: Collection,
    roots: list[str],
    include: Sequence[str],
    exclude: Sequence[str],
    table: TableOptions | None,
) -> None:
    """Store the folders and their options, so a later ``sync()`` without paths can redo them."""
    known = {r["path"]: r for r in json.loads(coll.settings.get("roots", "[]"))}
    for root in roots:
        known[root] = {
            "path": root,
            "include": list(include),
            "exclude": list(exclude),
            "table": dict(table.__dict__) if table else None,
        }
    with db.Transaction(coll.conn) as conn:
        db.set_settings(conn, {"roots": json.dumps(list(known.values()))})
    coll.settings = db.get_settings(coll.conn)
