"""``gemvec collections repair``: rebuild what derives from the database, salvage what a damaged one holds.

Every readable document whose chunks are all readable is copied, with its ids, into a new
database (an incomplete long document keeps its readable leading chunks and resumes later);
the keyword index is rebuilt from the chunks, and the FAISS index from the vectors on the next
open. Files whose documents were lost are forgotten, so the next ``sync`` reads them again. The
damaged file is kept next to the new one as ``gemvec.sqlite.damaged-<time>``.

A damaged header (the first 100 bytes) is patched with the values gemvec's databases always
have before reading, so a file SQLite calls "not a database" can still give up its rows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gemvec.errors import CollectionDamagedError, CollectionLockedError, CollectionNotFoundError
from gemvec.store import db
from gemvec.store.creation import REQUIRED_SETTINGS
from gemvec.store.integrity import read_only
from gemvec.store.lock import WriteLock
from gemvec.store.paths import DB_FILE, resolve_collection
from gemvec.store.persist import INDEX_FILE, RECORD_FILE

RANGE = 256  # rowids read per query; a failing range is read row by row
PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536)
DOCUMENT_COLUMNS = "id, source, path, title, hash, metadata, n_chunks, added_at, complete"
CHUNK_COLUMNS = "id, document_id, position, start, end, n_tokens, text, vector"


@dataclass
class RepairReport:
    path: str
    documents_kept: int = 0
    documents_lost: int = 0
    chunks_kept: int = 0
    chunks_lost: int = 0
    files_to_reread: int = 0
    damaged_copy: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def repair_collection(name_or_path: str | os.PathLike[str]) -> RepairReport:
    """Salvage a collection's database in place (taking its write lock); the index is rebuilt after."""
    folder = resolve_collection(name_or_path)
    if not (folder / DB_FILE).is_file():
        raise CollectionNotFoundError(f"No collection at {folder}.")
    lock = WriteLock(folder)
    if not lock.acquire():
        raise CollectionLockedError(
            f"Collection {folder} is being written by another process; repair it after."
        )
    try:
        return repair(folder)
    finally:
        lock.release()


def repair(folder: Path) -> RepairReport:
    """Salvage ``folder``'s database into a new one and put it in place (the caller holds the write lock)."""
    path = folder / DB_FILE
    source_path = _readable_copy(path, folder)
    report = RepairReport(str(folder))
    new_path = folder / f".{DB_FILE}.repairing-{os.getpid()}"
    new_path.unlink(missing_ok=True)
    source = read_only(source_path)
    target = db.connect(new_path)
    try:
        _salvage(source, target, report)
        target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        source.close()
        target.close()
        if source_path != path:
            source_path.unlink(missing_ok=True)
    report.damaged_copy = str(_swap_in(new_path, path))
    for derived in (INDEX_FILE, RECORD_FILE):
        (folder / derived).unlink(missing_ok=True)
    return report


def _salvage(source: sqlite3.Connection, target: sqlite3.Connection, report: RepairReport) -> None:
    settings = dict(_rows(source, "settings", "key, value", rowid="rowid"))
    missing = [key for key in REQUIRED_SETTINGS if key not in settings]
    if missing:
        raise CollectionDamagedError(
            f"The collection's settings are unreadable ({', '.join(missing)} missing): nothing can be "
            "salvaged without its dim and model. Delete it and index again."
        )
    vector_bytes = 4 * int(settings["dim"])
    chunks_by_document: dict[int, list[tuple]] = {}
    for row in _rows(source, "chunks", CHUNK_COLUMNS):
        if isinstance(row[7], bytes) and len(row[7]) == vector_bytes:
            chunks_by_document.setdefault(row[1], []).append(row)
    kept_paths: set[str] = set()
    with db.Transaction(target):
        db.set_settings(target, {**settings, "epoch": str(int(settings.get("epoch", "0")) + 1)})
        for document in _rows(source, "documents", _document_columns(source)):
            chunks = _usable_chunks(document, chunks_by_document.pop(document[0], []))
            if chunks is None:
                report.documents_lost += 1
                report.chunks_lost += document[6]
                continue
            target.execute(f"INSERT INTO documents({DOCUMENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", document)
            target.executemany(f"INSERT INTO chunks({CHUNK_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", chunks)
            target.executemany(
                "INSERT INTO chunks_fts(rowid, text, title) VALUES (?, ?, ?)",
                [(chunk[0], chunk[6], document[3] or "") for chunk in chunks],
            )
            report.documents_kept += 1
            report.chunks_kept += len(chunks)
            if document[2]:
                kept_paths.add(document[2])
        # Chunks left over belong to documents whose rows were unreadable.
        report.documents_lost += len(chunks_by_document)
        report.chunks_lost += sum(len(orphans) for orphans in chunks_by_document.values())
        # A file is remembered only with its documents: the others are read again by the next sync.
        files = list(_rows(source, "files", "path, hash", rowid="rowid"))
        target.executemany(
            "INSERT INTO files(path, hash) VALUES (?, ?)", [f for f in files if f[0] in kept_paths]
        )
        report.files_to_reread = sum(1 for f in files if f[0] not in kept_paths)
        # Chunk ids are never reused (AUTOINCREMENT), so a stale index id never aliases: keep the mark.
        target.execute("DELETE FROM sqlite_sequence WHERE name = 'chunks'")
        seen = max(_sequence(source), target.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()[0])
        target.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('chunks', ?)", (seen,))


def _document_columns(conn: sqlite3.Connection) -> str:
    """The document columns to read; a database from before incomplete documents has them all complete."""
    try:
        names = {row[1] for row in conn.execute("PRAGMA table_info(documents)")}
    except sqlite3.DatabaseError:
        names = set()
    return DOCUMENT_COLUMNS if "complete" in names or not names else DOCUMENT_COLUMNS.replace("complete", "1")


def _usable_chunks(document: tuple, chunks: list[tuple]) -> list[tuple] | None:
    """The chunks to keep, in order: all of a complete document's, or an incomplete one's leading run."""
    leading: list[tuple] = []
    for expected, chunk in enumerate(sorted(chunks, key=lambda c: c[2])):
        if chunk[2] != expected:
            break
        leading.append(chunk)
    complete = bool(document[8])
    if (complete and len(leading) == document[6]) or (not complete and leading):
        return leading
    return None


def _rows(conn: sqlite3.Connection, table: str, columns: str, rowid: str = "id") -> Iterator[tuple]:
    """Every readable row of ``table``: ranges of rowids, row by row where a range fails to read."""
    upper = _max_rowid(conn, table, rowid)
    for start in range(1, upper + 1, RANGE):
        stop = min(upper, start + RANGE - 1)
        try:
            yield from conn.execute(
                f"SELECT {columns} FROM {table} WHERE {rowid} BETWEEN ? AND ? ORDER BY {rowid}", (start, stop)
            ).fetchall()
        except sqlite3.DatabaseError:
            for single in range(start, stop + 1):
                with contextlib.suppress(sqlite3.DatabaseError):
                    yield from conn.execute(
                        f"SELECT {columns} FROM {table} WHERE {rowid} = ?", (single,)
                    ).fetchall()


def _max_rowid(conn: sqlite3.Connection, table: str, rowid: str) -> int:
    with contextlib.suppress(sqlite3.DatabaseError):
        return int(conn.execute(f"SELECT COALESCE(MAX({rowid}), 0) FROM {table}").fetchone()[0])
    if table == "chunks":
        return _sequence(conn)
    # Every document has a chunk and ids only grow, so document ids stay below the chunk mark.
    return _sequence(conn)


def _sequence(conn: sqlite3.Connection) -> int:
    with contextlib.suppress(sqlite3.DatabaseError, TypeError):
        return int(conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()[0])
    return 0


def _readable_copy(path: Path, folder: Path) -> Path:
    """``path`` if SQLite can read its schema, else a copy with a patched header that it can read."""
    if _schema_readable(path):
        return path
    copy = folder / f".{DB_FILE}.patched-{os.getpid()}"
    shutil.copyfile(path, copy)
    for page_size in PAGE_SIZES:
        _patch_header(copy, page_size)
        if _schema_readable(copy):
            return copy
    copy.unlink(missing_ok=True)
    raise CollectionDamagedError(
        f"{path} is damaged beyond what gemvec can read: no page size makes its schema readable. "
        "Delete the collection and index again."
    )


def _schema_readable(path: Path) -> bool:
    try:
        conn = read_only(path)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            conn.execute("SELECT COUNT(*) FROM settings").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False
    return True


def _patch_header(path: Path, page_size: int) -> None:
    """Rewrite the 100-byte header as gemvec writes it (format 4, UTF-8, WAL), for ``page_size``.

    The copy is only ever read, so the free-page list is dropped and the size taken from the file.
    """
    pages = path.stat().st_size // page_size
    fields = [
        (24, 1),  # change counter ...
        (28, pages),  # ... database size in pages, trusted because it matches "version valid for"
        (32, 0),  # free-page list: none
        (36, 0),
        (40, 1),  # schema cookie
        (44, 4),  # schema format
        (48, 0),  # default cache size
        (52, 0),  # no auto-vacuum
        (56, 1),  # UTF-8
        (60, len(db.MIGRATIONS)),  # user_version
        (64, 0),
        (68, 0),  # application id
        (92, 1),  # version valid for
        (96, 3_040_001),
    ]
    with open(path, "r+b") as f:
        header = bytearray(f.read(100))
        header[0:16] = b"SQLite format 3\0"
        header[16:18] = (1 if page_size == 65536 else page_size).to_bytes(2, "big")
        header[18:24] = bytes([2, 2, 0, 64, 32, 32])
        header[72:92] = bytes(20)  # reserved: zero
        for offset, value in fields:
            header[offset : offset + 4] = value.to_bytes(4, "big")
        f.seek(0)
        f.write(header)


def _swap_in(new_path: Path, path: Path) -> Path:
    """Put the salvaged database in place; keep the damaged one beside it and return its name."""
    damaged = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, damaged)
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            os.replace(sidecar, damaged.with_name(damaged.name + suffix))
    os.replace(new_path, path)
    return damaged
