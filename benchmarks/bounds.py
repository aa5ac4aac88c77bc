"""Two of the bounds ingest's own CPU overhead is measured against, each in a process of its own.

    python -m benchmarks.bounds sha256 SIZE
    python -m benchmarks.bounds write-behind SIZE PATH [--window BYTES]

`sha256`: SHA-256 (hashlib, i.e. OpenSSL) over SIZE bytes of a 1 MiB block already in memory:
the hashing every stored byte costs, with no read or copy. `write-behind`: SIZE bytes written
to PATH in 1 MiB writes with write-behind, then fsync: on each new window (8 MiB) the kernel
is told to start writing it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), the window before it is
waited for (`WAIT_BEFORE|WRITE|WAIT_AFTER`) and dropped from the page cache
(`posix_fadvise(POSIX_FADV_DONTNEED)`), as PostgreSQL's `backend_flush_after` does: the
cheapest durable write of the bytes. Each prints one JSON object: the wall and CPU seconds
(user+sys from getrusage, around the measured loop only, so interpreter start-up is not
counted), the bytes done, the peak RSS, and for write-behind the bytes written to storage
(/proc/self/io) and the SHA-256 of what the file must hold (computed after the loop, untimed).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest.config import parse_size

MiB = 1024 * 1024
BLOCK = MiB
WINDOW = 8 * MiB

# <linux/fs.h>
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def _blocks(size: int) -> tuple[bytes, list[int]]:
    """The 1 MiB block every write or update uses, and the lengths of the pieces of SIZE."""
    block = os.urandom(BLOCK)
    return block, [BLOCK] * (size // BLOCK) + ([size % BLOCK] if size % BLOCK else [])


def sha256_alone(size: int) -> dict[str, Any]:
    block, pieces = _blocks(size)
    view = memoryview(block)
    digest = hashlib.sha256()
    cpu, started = _cpu_seconds(), time.perf_counter()
    for length in pieces:
        digest.update(view[:length])
    digest.hexdigest()
    return {"seconds": time.perf_counter() - started, "cpu_seconds": _cpu_seconds() - cpu, "bytes": sum(pieces)}


def sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range(2), which `os` lacks; None where libc has none (macOS, musl builds)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    function = getattr(libc, "sync_file_range", None)
    if function is None:
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def call(fd: int, offset: int, length: int, flags: int) -> int:
        if function(fd, offset, length, flags) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
        return 0
    return call


def write_behind_alone(path: Path, size: int, window: int = WINDOW) -> dict[str, Any]:
    block, pieces = _blocks(size)
    view = memoryview(block)
    flush = sync_file_range()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    written_before = _written_bytes()
    cpu, started = _cpu_seconds(), time.perf_counter()
    try:
        offset = started_up_to = 0  # bytes written; bytes whose writeback has been started
        for length in pieces:
            piece = view[:length]
            while piece:
                piece = piece[os.write(fd, piece):]
            offset += length
            while flush is not None and offset - started_up_to >= window:
                flush(fd, started_up_to, window, SYNC_FILE_RANGE_WRITE)
                if started_up_to >= window:  # the window before: wait for it, then drop its pages
                    previous = started_up_to - window
                    flush(fd, previous, window,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)
                    os.posix_fadvise(fd, previous, window, os.POSIX_FADV_DONTNEED)
                started_up_to += window
        fsync_started = time.perf_counter()
        os.fsync(fd)
        fsync_seconds = time.perf_counter() - fsync_started
    finally:
        os.close(fd)
    result = {"seconds": time.perf_counter() - started, "cpu_seconds": _cpu_seconds() - cpu, "bytes": offset,
              "fsync_seconds": fsync_seconds, "write_bytes": _written_bytes() - written_before,
              "sync_file_range": flush is not None, "window": window}
    digest = hashlib.sha256()
    for length in pieces:
        digest.update(view[:length])
    return {**result, "sha256": digest.hexdigest()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("bound", choices=("sha256", "write-behind"))
    parser.add_argument("size", type=parse_size)
    parser.add_argument("path", type=Path, nargs="?")
    parser.add_argument("--window", type=parse_size, default=WINDOW)
    args = parser.parse_args(argv)
    if args.bound == "sha256":
        result = sha256_alone(args.size)
    elif args.path is None:
        parser.error("write-behind needs a PATH")
    else:
        result = write_behind_alone(args.path, args.size, args.window)
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
