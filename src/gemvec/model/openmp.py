"""Handing torch's CPU work from one thread to another without slowing it down.

torch's Linux wheels run their CPU kernels on GNU OpenMP (libgomp), which gives every thread
that enters a parallel region a pool of worker threads of its own, kept until that thread
exits. Between regions the workers spin for a while (300,000 spins) before they sleep, so the
next region starts at once — unless the process holds more OpenMP threads than it has CPUs:
then libgomp spins only 100 times, the workers fall asleep between nearly every pair of
operations, and waking them costs the model a sixth of the machine.

That is what happens when one thread loads the model and another runs it (``gemvec serve``
loads on the main thread, then embeds on its model thread): two pools, four threads on two
CPUs. Releasing the loading thread's pool gave the model back the idle share of the machine
(``benchmarks/server_load.py``; the figures are in BENCHMARKS.md, "HTTP server under load").
"""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path

log = logging.getLogger("gemvec")

_OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: free the threads, keep what can be kept


def loaded_libgomps() -> list[str]:
    """Paths of the GNU OpenMP runtimes loaded in this process (torch's, and any a wheel bundles)."""
    maps = Path("/proc/self/maps")
    if not sys.platform.startswith("linux") or not maps.is_file():
        return []
    paths = {line.split()[-1] for line in maps.read_text().splitlines() if "libgomp" in line}
    return sorted(p for p in paths if p.startswith("/"))


def release_openmp_threads() -> int:
    """Free the calling thread's OpenMP worker threads in every loaded libgomp; the number of
    runtimes that did. Call it on a thread that is done with torch when another thread takes
    over; if the caller runs torch again, its pool simply comes back. A no-op elsewhere
    (LLVM's and Intel's OpenMP runtimes do not throttle this way)."""
    released = 0
    for path in loaded_libgomps():
        try:
            pause = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):  # an old libgomp without OpenMP 5.0's pause
            continue
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        if pause(_OMP_PAUSE_SOFT) == 0:
            released += 1
    log.debug("released this thread's OpenMP threads in %d runtime(s)", released)
    return released
