"""BlobSink: one file on its way into storage, counted, limited and hashed as it streams.

The event loop only appends chunks to a list. Once a block (1 MiB by default) has gathered,
one worker-thread job hashes it and writes it with one `writev`; hashlib and `os.writev`
release the GIL, so hashing and writing overlap with parsing of the next block. At most one
job per sink is in flight: the next block waits for it, which is what pushes back on the
client (uvicorn stops reading the socket while the app does not ask for more).
A thread hop per block rather than per ~64-256 KiB chunk keeps the hop cost small.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anyio

from ingest.errors import FileTooLarge, IngestError, InsufficientStorage, StorageFailed
from ingest.storage.base import BlobWriter

_io_threads = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ingest-io")


@dataclass(frozen=True)
class Received:
    """What a finished sink holds: its size and SHA-256 (lowercase hex)."""

    size: int
    sha256: str


class BlobSink:
    def __init__(self, writer: BlobWriter, *, max_size: int, block_size: int) -> None:
        self._writer = writer
        self._max_size = max_size
        self._block_size = block_size
        self._hasher = hashlib.sha256()
        self._block: list[bytes] = []
        self._block_bytes = 0
        self._in_flight: asyncio.Future[None] | None = None
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_size:
            raise FileTooLarge(f"file is larger than the limit of {self._max_size} bytes")
        self._block.append(chunk)
        self._block_bytes += len(chunk)
        if self._block_bytes >= self._block_size:
            await self._flush()

    async def _flush(self) -> None:
        block, self._block, self._block_bytes = self._block, [], 0
        await self._settle()
        if block:
            loop = asyncio.get_running_loop()
            self._in_flight = loop.run_in_executor(_io_threads, self._absorb, block)

    async def _settle(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    def _absorb(self, block: list[bytes]) -> None:
        """Worker thread: hash, then write, one block."""
        for chunk in block:
            self._hasher.update(chunk)
        try:
            self._writer.write(block)
        except OSError as error:
            raise storage_error(error) from error

    async def finish(self) -> Received:
        """Write what is left and wait for it; the blob is complete but not yet committed."""
        await self._flush()
        await self._settle()
        return Received(size=self.size, sha256=self._hasher.hexdigest())

    async def commit(self, blob_id: str) -> None:
        try:
            await anyio.to_thread.run_sync(self._writer.commit, blob_id)
        except OSError as error:
            raise storage_error(error) from error

    async def abort(self) -> None:
        """Discard the blob. Waits for the job in flight first, so no write races the abort."""
        with anyio.CancelScope(shield=True):
            # A failed write is already being reported by whoever called abort.
            with contextlib.suppress(Exception):
                await self._settle()
            await anyio.to_thread.run_sync(self._writer.abort)


def storage_error(error: OSError) -> IngestError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("the server has no space left to store this upload")
    return StorageFailed(f"storage failed: {error.strerror or error}")
