"""Appender: one PATCH body on its way into a partial upload, hashed as it streams.

Same shape as `BlobSink` (ingest/sink.py): the event loop only gathers chunks into blocks; each
block is hashed on one ordered lane and written on another, on worker threads, beside the
reading of the next block. The hash lane feeds the whole-upload SHA-256 (continued across
PATCHes) and, when the client sent `Upload-Checksum`, the checksum of this chunk.
"""

from __future__ import annotations

from typing import Any, cast

import anyio

from ingest.errors import UploadLengthExceeded
from ingest.sink import OrderedLane, storage_error
from ingest.storage.base import PartialWriter


class Appender:
    def __init__(self, writer: PartialWriter, *, upload_hash: Any | None, chunk_hash: Any | None,
                 limit: int, block_size: int) -> None:
        self._writer = writer
        self._hashes = [h for h in (upload_hash, chunk_hash) if h is not None]
        self._limit = limit  # bytes this PATCH may add: up to Upload-Length or the size limit
        self._block_size = block_size
        self._block = bytearray()
        self._hash_lane = OrderedLane(self._hash)
        self._write_lane = OrderedLane(self._write)
        self.received = 0

    async def write(self, chunk: bytes) -> None:
        if self.received + len(chunk) > self._limit:
            raise UploadLengthExceeded(
                f"the body goes past the declared Upload-Length (or the size limit) by "
                f"{self.received + len(chunk) - self._limit} bytes")
        self.received += len(chunk)
        self._block += chunk
        if len(self._block) >= self._block_size:
            await self._flush()

    async def _flush(self) -> None:
        block, self._block = self._block, bytearray()
        if block:
            # Shielded so that a hand-over (which cancels the body read) never leaves a block
            # hashed but not written, or the reverse.
            # OrderedLane hands each item to our own `_hash`/`_write` untouched, whatever the
            # item type BlobSink uses for its blocks.
            item = cast(Any, block)
            with anyio.CancelScope(shield=True):
                await self._hash_lane.submit(item)
                await self._write_lane.submit(item)

    async def drain(self) -> None:
        """Write and hash every byte received so far and wait for both lanes."""
        with anyio.CancelScope(shield=True):
            await self._flush()
            await self._hash_lane.join()
            await self._write_lane.join()

    def _hash(self, block: Any) -> None:
        for hasher in self._hashes:
            hasher.update(block)

    def _write(self, block: Any) -> None:
        try:
            self._writer.write(block)
        except OSError as error:
            raise storage_error(error) from error
