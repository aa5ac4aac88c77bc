"""Process-wide tuning, applied by each server process at start-up (`ingest.server.worker`).

glibc's malloc, by default, serves the ~256 KiB body chunks uvicorn hands out from the heap
top and trims it again after each: hundreds of thousands of page faults and thousands of
brk calls per GiB, which halved upload throughput in measurements (see benchmarks/README).
A fixed mmap threshold above the chunk size and a high trim threshold keep freed chunks for
reuse; RSS stays the same because the same few chunks are recycled.

It changes the whole process, so `ingest.app.create_app` never calls it: a test or a program
embedding the app keeps its allocator as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("ingest")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024

_applied = False


def tune_allocator() -> bool:
    """Set glibc malloc thresholds once per process; False where there is no glibc."""
    global _applied
    if _applied:
        return True
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not _applied:
        log.warning("mallopt refused the allocator settings")
    return _applied
