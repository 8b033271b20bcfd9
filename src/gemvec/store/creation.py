"""Creating, opening and deleting a collection's database, so that no crash leaves half a collection.

A new database is built whole (schema and settings) under a temporary name in the folder,
closed, then hard-linked to its final name: the link either appears complete or not at all,
and when two processes create the same collection at once exactly one link wins.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

from gemvec.errors import CollectionDamagedError, CollectionError, CollectionNotFoundError, StorageFullError
from gemvec.store import db
from gemvec.store.paths import DB_FILE, resolve_collection

MIN_FREE_BYTES = 1 << 20
REQUIRED_SETTINGS = ("model", "model_id", "dim", "precision", "chunk_tokens", "overlap")


def create_database(
    folder: Path, settings: dict[str, str], *, exist_ok: bool
) -> tuple[sqlite3.Connection, bool]:
    """A connection to a new database at ``folder`` holding ``settings``; True if this call created it.

    With ``exist_ok``, a collection created meanwhile by someone else is opened instead (False).
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / DB_FILE
    temporary = folder / f".{DB_FILE}.creating-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    try:
        conn = db.connect(temporary)
        with db.Transaction(conn):
            db.set_settings(conn, settings)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _fsync(temporary)
        try:
            os.link(temporary, final)
            created = True
        except FileExistsError:
            created = False
    finally:
        for leftover in (temporary, *temporary.parent.glob(temporary.name + "-*")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    if not created and not exist_ok:
        raise CollectionError(f"Collection {folder} already exists; open it, or delete it first.")
    _fsync(folder)
    conn, _ = open_database(folder)
    return conn, created


def open_database(folder: Path) -> tuple[sqlite3.Connection, dict[str, str]]:
    """A connection and the settings; a damaged or foreign database is a CollectionDamagedError."""
    path = folder / DB_FILE
    if not path.is_file():
        raise CollectionNotFoundError(f"No collection at {folder}.")
    try:
        conn = db.connect(path)
        settings = db.get_settings(conn)
    except sqlite3.DatabaseError as exc:
        if shutil.disk_usage(folder).free < MIN_FREE_BYTES:  # WAL needs room for its -shm file
            raise StorageFullError(
                f"Collection {folder} cannot be opened: its disk is full ({exc}). Free some space."
            ) from None
        raise CollectionDamagedError(
            f"{path} cannot be read ({exc}). See what is left with `gemvec collections check -c {folder}` "
            f"and salvage it with `gemvec collections repair -c {folder}`."
        ) from None
    missing = [key for key in REQUIRED_SETTINGS if key not in settings]
    if missing:
        conn.close()
        raise CollectionDamagedError(
            f"{path} has no settings ({', '.join(missing)} missing): it was not created by gemvec, or its "
            f"creation was interrupted by an older gemvec. Delete it with `gemvec collections delete -c "
            f"{folder}` and index again."
        )
    return conn, settings


def delete_collection(name_or_path: str | os.PathLike[str]) -> Path:
    """Remove a collection folder (only if it holds a gemvec database); return its path."""
    folder = resolve_collection(name_or_path)
    if not (folder / DB_FILE).is_file():
        raise CollectionNotFoundError(f"No collection at {folder}.")
    shutil.rmtree(folder)
    return folder


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
