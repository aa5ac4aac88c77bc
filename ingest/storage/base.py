"""The contract between the upload service and a storage backend.

Backends are plain blocking code. The upload service calls them from worker threads, one call
at a time per writer, and owns all concurrency, hashing and limits: a backend only moves bytes.
A new blob is invisible until `commit`; `abort` (or a crash) leaves nothing a reader can see,
and whatever a crash leaves behind is reclaimed by `sweep_temporary`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

_STORAGE_ID = re.compile(r"[0-9a-f]{32}")


def is_storage_id(name: str) -> bool:
    """Blob and upload ids are 32 lowercase hex digits (a UUID4's hex). Ids reach storage from
    URLs, so only this format ever becomes part of a path or an object key."""
    return _STORAGE_ID.fullmatch(name) is not None


class BlobWriter(Protocol):
    def write(self, block: bytes | bytearray) -> None:
        """Append the block. Raises OSError (ENOSPC included) on failure."""

    def commit(self, blob_id: str) -> None:
        """Make the written bytes readable under `blob_id`, atomically and durably."""

    def abort(self) -> None:
        """Discard everything written. Safe to call more than once, and after a failed commit."""


@runtime_checkable
class WritesPieces(Protocol):
    """Optional capability of a BlobWriter or PartialWriter: append a block given as its
    pieces in one call (`writev` on local disk), instead of one `write` per piece."""

    def write_pieces(self, pieces: Sequence[bytes | bytearray]) -> None: ...


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
class HasThreads(Protocol):
    """Optional capability: a backend with worker threads of its own (S3 part uploads), made
    by `start` when the upload service starts and ended by `stop` when it stops; `writers` is
    how many blobs may be written at once, which the backend sizes its threads for."""

    def start(self, *, writers: int) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class LocalFiles(Protocol):
    """Optional capability: committed blobs are local files, so downloads can use sendfile."""

    def path_of(self, blob_id: str) -> Path: ...


# --- optional capability: resumable (tus) uploads --------------------------------------------
#
# Modelled on tusd's store interfaces (NewUpload / WriteChunk / GetInfo / FinishUpload /
# Terminate), small enough for an object store: on S3 a partial upload is a list of chunk
# objects of one part each, finished by a multipart copy (storage/s3_partials.py); on disk
# it is one file (storage/local_partials.py); `state` is a small JSON object either way.


class PartialBusy(Exception):
    """Another process holds the partial upload's writer (see `ResumableStorage.open_partial`)."""


class PartialWriter(Protocol):
    """One writing session on a partial upload, exclusive across processes while open."""

    offset: int
    """Bytes stored when the session opened; the next `write` appends there."""

    def write(self, block: bytes | bytearray) -> None:
        """Append the block. Raises OSError (ENOSPC included) on failure."""

    def rollback(self) -> None:
        """Discard everything this session wrote (a chunk whose checksum did not match)."""

    def sync(self) -> None:
        """After the last write: make every byte written durable, keeping the session."""

    def truncate(self, offset: int) -> None:
        """Before any write: cut the stored bytes back to `offset` (at most `self.offset`),
        durably, and append there (bytes of a checksummed PATCH a crash left unverified)."""

    def close(self) -> None:
        """Make what was written durable (when the store fsyncs) and release the session."""


class ResumableStorage(Protocol):
    """Partial uploads that outlive requests and restarts, then become ordinary blobs."""

    def create_partial(self, upload_id: str, state: dict[str, Any]) -> None:
        """Start an empty partial upload with its (JSON-serialisable) state."""

    def partial_state(self, upload_id: str) -> tuple[dict[str, Any], int]:
        """The state and the number of bytes stored. Raises KeyError for an unknown upload."""

    def save_partial_state(self, upload_id: str, state: dict[str, Any]) -> None:
        """Replace the state atomically."""

    def open_partial(self, upload_id: str) -> PartialWriter:
        """Open a writing session. Raises PartialBusy while another process has one open,
        KeyError for an unknown upload."""

    def read_partial(self, upload_id: str, *, end: int, block_size: int) -> Iterator[bytes]:
        """The stored bytes up to `end`, in blocks (to rebuild a hash after a restart)."""

    def finish_partial(self, upload_id: str) -> BlobWriter:
        """A writer holding the complete bytes: its `commit(blob_id)` makes them a blob and
        its `abort` leaves the partial upload as it was, so a failed commit can be retried."""

    def terminate_partial(self, upload_id: str, *, keep_state: bool = False) -> None:
        """Remove the bytes, and the state unless `keep_state` (a finished upload's record).
        A missing upload is not an error."""

    def partial_ids(self) -> list[str]:
        """Every partial upload with a state, for sweeping expired ones."""

    def sweep_staging(self, *, older_than: float) -> int:
        """Remove what a crash left of a state being replaced (its writer gone, or untouched
        for `older_than` seconds); return how many."""


@runtime_checkable
class RecordsDigest(Protocol):
    """Optional capability of a BlobWriter: keep the blob's SHA-256 beside its bytes (as S3
    object metadata). The sink computes the digest once, inline, and hands it over after the
    last write and before `commit`, so a backend never hashes the bytes a second time."""

    def record_sha256(self, sha256: str) -> None: ...


@dataclass
class BlobStream:
    """An open read of a committed blob (or of one byte range of it)."""

    length: int  # bytes this read yields
    content_range: str | None  # `bytes first-last/size` when a range was served
    read: Callable[[int], bytes]  # blocking; b"" at the end
    close: Callable[[], None]


@runtime_checkable
class StreamedBlobs(Protocol):
    """Optional capability: committed blobs are remote objects, read as streams."""

    def open_stream(self, blob_id: str, *, byte_range: str | None) -> BlobStream:
        """Start reading. `byte_range` is one `bytes=first-last` range, evaluated by the store.
        Raises FileNotFoundError for a missing blob, errors.RangeNotSatisfiable for a range
        outside it."""

    def presigned_url(self, blob_id: str, *, expires_seconds: int, content_type: str,
                      content_disposition: str) -> str:
        """A URL that serves the blob, with these response headers, without credentials."""
