"""``gemvec collections check``: what is wrong with a collection, without changing anything.

The database is the truth and the FAISS index a cache, so findings come in two kinds:
``problems`` (the database is damaged or inconsistent: ``repair`` fixes what it can) and
``notes`` (the index is stale or missing: rebuilt from the database on the next open).
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gemvec.errors import CollectionNotFoundError
from gemvec.store.creation import REQUIRED_SETTINGS
from gemvec.store.paths import DB_FILE
from gemvec.store.persist import INDEX_FILE, RECORD_FILE


@dataclass
class CheckReport:
    path: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def problem(self, text: str) -> None:
        self.ok = False
        self.problems.append(text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_only(path: Path) -> sqlite3.Connection:
    """A connection that never writes (no migrations, no journal changes)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)


def check(folder: Path) -> CheckReport:
    """Integrity of the database (SQLite's own check, settings, chunks, FTS rows) and of the index."""
    path = folder / DB_FILE
    if not path.is_file():
        raise CollectionNotFoundError(f"No collection at {folder}.")
    report = CheckReport(str(folder))
    try:
        conn = read_only(path)
        try:
            _check_database(conn, report)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        report.problem(f"the database cannot be read: {exc}")
    _check_index(folder, report)
    return report


def _check_database(conn: sqlite3.Connection, report: CheckReport) -> None:
    try:
        findings = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
    except sqlite3.DatabaseError as exc:
        findings = [str(exc)]
    if findings != ["ok"]:
        report.problem("SQLite integrity check: " + "; ".join(findings))
    settings = dict(conn.execute("SELECT key, value FROM settings"))
    missing = [key for key in REQUIRED_SETTINGS if key not in settings]
    if missing:
        report.problem(f"settings missing: {', '.join(missing)}")
        return
    dim = int(settings["dim"])

    def count(sql: str) -> int:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.DatabaseError as exc:
            report.problem(f"unreadable ({exc}): {sql}")
            return 0

    report.counts = {
        "documents": count("SELECT COUNT(*) FROM documents"),
        "incomplete_documents": count("SELECT COUNT(*) FROM documents WHERE NOT complete"),
        "chunks": count("SELECT COUNT(*) FROM chunks"),
        "fts_rows": count("SELECT COUNT(*) FROM chunks_fts"),
    }
    checks = {
        "chunks without a document": (
            "SELECT COUNT(*) FROM chunks c "
            "WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = c.document_id)"
        ),
        "complete documents missing chunks": (
            "SELECT COUNT(*) FROM documents d WHERE complete AND n_chunks != "
            "(SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id)"
        ),
        "chunks whose vector is not float32 of the collection's dim": (
            f"SELECT COUNT(*) FROM chunks WHERE length(vector) != {4 * dim}"
        ),
        "chunks without a keyword-index row": (
            "SELECT COUNT(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM chunks_fts f WHERE f.rowid = c.id)"
        ),
        "keyword-index rows without a chunk": (
            "SELECT COUNT(*) FROM chunks_fts f WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = f.rowid)"
        ),
    }
    for what, sql in checks.items():
        found = count(sql)
        if found:
            report.problem(f"{found} {what}")


def _check_index(folder: Path, report: CheckReport) -> None:
    try:
        record = json.loads((folder / RECORD_FILE).read_text())
        data = (folder / INDEX_FILE).read_bytes()
    except (OSError, ValueError):
        report.notes.append("no saved index: it is built from the database on the next open")
        return
    if len(data) != record.get("size") or zlib.crc32(data) != record.get("crc32"):
        report.notes.append("the saved index does not match its checksum: rebuilt on the next open")
    elif report.counts and record.get("count") != report.counts["chunks"]:
        report.notes.append(
            f"the saved index holds {record.get('count')} vectors for {report.counts['chunks']} chunks: "
            "caught up or rebuilt on the next open"
        )
