"""Give freed heap memory back to the operating system.

glibc keeps memory freed by large temporary objects (the parse of tokenizer.json, the float32
copies a weight passes through while it is fused or quantised) in the process's heap, where it
counts toward RSS for the rest of the process's life. ``malloc_trim(0)`` returns it.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys


def return_freed_heap() -> None:
    """``malloc_trim(0)`` on glibc Linux; nothing elsewhere (musl, macOS, Windows)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
