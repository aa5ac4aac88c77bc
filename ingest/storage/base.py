"""The contract between the upload service and a storage backend.

Backends are plain blocking code. The upload service calls them from worker threads, one call
at a time per writer, and owns all concurrency, hashing and limits: a backend only moves bytes.
A new blob is invisible until `commit`; `abort` (or a crash) leaves nothing a reader can see,
and whatever a crash leaves behind is reclaimed by `sweep_temporary`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


class BlobWriter(Protocol):
    def write(self, block: bytes | bytearray) -> None:
        """Append the block. Raises OSError (ENOSPC included) on failure."""

    def commit(self, blob_id: str) -> None:
        """Make the written bytes readable under `blob_id`, atomically and durably."""

    def abort(self) -> None:
        """Discard everything written. Safe to call more than once, and after a failed commit."""


class Storage(Protocol):
    def create(self) -> BlobWriter:
        """Start a new, not yet visible blob."""

    def delete(self, blob_id: str) -> None:
        """Remove a committed blob; a missing one is not an error."""

    def exists(self, blob_id: str) -> bool: ...

    def sweep_temporary(self, *, older_than: float) -> int:
        """Remove unfinished blobs whose writer is gone or that were untouched for
        `older_than` seconds; return how many."""

    def blob_ids(self, *, older_than: float) -> list[str]:
        """Committed blobs last changed over `older_than` seconds ago, for reconciling
        storage with the catalog (younger ones may still be waiting for their row)."""


@runtime_checkable
class LocalFiles(Protocol):
    """Optional capability: committed blobs are local files, so downloads can use sendfile."""

    def path_of(self, blob_id: str) -> Path: ...
