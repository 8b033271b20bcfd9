"""Storage failures as errors a user can act on: a full disk, a damaged database, a busy one.

SQLite and the OS report these as ``sqlite3.OperationalError("database or disk is full")``,
``sqlite3.DatabaseError("database disk image is malformed")`` or ``OSError(ENOSPC)``; left
alone they surface as tracebacks (CLI) or 500s (server).
"""

from __future__ import annotations

import errno
import functools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from gemvec.errors import CollectionDamagedError, CollectionLockedError, GemvecError, StorageFullError

F = TypeVar("F", bound=Callable)
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_DAMAGED = ("malformed", "not a database", "disk i/o error", "corrupt")


def translate(exc: BaseException, folder: Path) -> GemvecError | None:
    """The actionable error for a storage failure under ``folder``, or None when it is something else."""
    message = str(exc).lower()
    if (isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS) or (
        isinstance(exc, sqlite3.OperationalError) and "full" in message
    ):
        return StorageFullError(
            f"The disk holding collection {folder} is full ({exc}). Free some space and run the command "
            "again: everything committed before is kept, and an interrupted ingest resumes."
        )
    if isinstance(exc, sqlite3.OperationalError) and "locked" in message:
        return CollectionLockedError(f"Collection {folder} is busy ({exc}); try again in a moment.")
    if isinstance(exc, sqlite3.DatabaseError) and (
        type(exc) is sqlite3.DatabaseError or any(word in message for word in _DAMAGED)
    ):
        return CollectionDamagedError(
            f"Collection {folder} is damaged ({exc}). See what is readable with `gemvec collections check "
            f"-c {folder}` and salvage it with `gemvec collections repair -c {folder}`."
        )
    return None


@contextmanager
def storage_errors(folder: Path) -> Iterator[None]:
    """Re-raise storage failures inside the block as the errors :func:`translate` names."""
    try:
        yield
    except (sqlite3.DatabaseError, OSError) as exc:
        actionable = translate(exc, folder)
        if actionable is None:
            raise
        raise actionable from exc


def guarded(method: F) -> F:
    """Decorate a Collection method so its storage failures become actionable errors."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with storage_errors(self.folder):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
