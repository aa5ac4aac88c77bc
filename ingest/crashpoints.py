"""Named crash points: the steps of every commit sequence, where a test can kill the process.

Like PostgreSQL's injection points and SQLite's crash tests: `INGEST_CRASH_AT=<point>[:<nth>]`
in the environment of a server makes the process SIGKILL itself right after the `nth` (default
1st) time it reaches `point`, exactly as `kill -9` would — no cleanup, no flush, no answer. It is
read once, at import, and only from the environment: no flag or setting can turn it on. Unset,
`reached` is one comparison of a module global, and it is only called at commit steps, never
per chunk.

The sequences (README "Crashes"):
- multipart and raw body, local disk: temp file fsynced (`temp.synced`) -> blob renamed into
  `files/` (`blob.committed`) -> rows inserted (`rows.inserted`) -> answer.
- S3: parts uploaded (`s3.part_uploaded`, each part) -> multipart upload completed
  (`s3.completed`) -> copied to `files/` (`blob.committed`) -> rows inserted -> answer.
- tus PATCH: bytes appended and synced (`tus.chunk_appended`) -> state written
  (`tus.state_written`; on local disk through a staging file, `tus.state_staged`) -> answer;
  S3 stores each full part as it fills (`s3.chunk_stored`, before the manifest names it).
- tus commit (the last byte is in): blob linked/copied (`blob.committed`) -> row inserted
  (`rows.inserted`) -> state marked done (`tus.state_done`) -> partial bytes removed -> answer.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "INGEST_CRASH_AT"

POINTS = frozenset({
    "temp.synced", "blob.committed", "rows.inserted",
    "s3.part_uploaded", "s3.completed", "s3.chunk_stored",
    "tus.chunk_appended", "tus.state_staged", "tus.state_written", "tus.state_done",
})


def _parse(spec: str) -> tuple[str | None, int]:
    if not spec:
        return None, 0
    point, _, nth = spec.partition(":")
    if point not in POINTS:
        # A typo must not make a crash test pass by never crashing.
        raise ValueError(f"{ENV}: unknown crash point {point!r}; known: {', '.join(sorted(POINTS))}")
    if nth and not (nth.isdigit() and int(nth) >= 1):
        raise ValueError(f"{ENV}: {nth!r} is not a count from 1")
    return point, int(nth or 1)


_point, _remaining = _parse(os.environ.get(ENV, ""))
_count_lock = threading.Lock()  # some points are reached on worker threads (S3 parts)


def reached(point: str) -> None:
    """The step `point` is done (durably, where the step is a write)."""
    global _remaining
    if point != _point:
        return
    with _count_lock:
        _remaining -= 1
        crash = _remaining == 0
    if crash:
        os.write(2, f"ingest: crash point {point} reached in process {os.getpid()}: SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
