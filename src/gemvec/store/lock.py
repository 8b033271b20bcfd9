"""One writer per collection: an exclusive ``flock`` on ``write.lock``, released by the OS even on kill -9."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "write.lock"


class WriteLock:
    """Non-blocking: :meth:`acquire` says whether it got the lock."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
