"""BlobSink: what it stores and hashes, whatever the sizes and kinds of the chunks it is given."""

from __future__ import annotations

import hashlib
import os

import pytest

from ingest.sink import BY_REFERENCE, BlobSink


class MemoryWriter:
    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes | bytearray) -> None:
        self.written += data

    def commit(self, blob_id: str) -> None:
        pass

    def abort(self) -> None:
        pass


@pytest.mark.anyio
async def test_sink_stores_and_hashes_large_and_small_chunks_in_order() -> None:
    chunks = [os.urandom(size) for size in (BY_REFERENCE, 10, 3, BY_REFERENCE * 5, 1, BY_REFERENCE - 1, 700_000)] * 3
    writer = MemoryWriter()
    sink = BlobSink(writer, max_size=1 << 30, block_size=256 * 1024)
    for chunk in chunks:
        await sink.write(chunk)
    received = await sink.finish()
    expected = b"".join(chunks)
    assert bytes(writer.written) == expected
    assert received.size == len(expected)
    assert received.sha256 == hashlib.sha256(expected).hexdigest()


@pytest.mark.anyio
async def test_sink_copies_a_mutable_buffer_its_caller_reuses() -> None:
    writer = MemoryWriter()
    sink = BlobSink(writer, max_size=1 << 30, block_size=4 * BY_REFERENCE)
    buffer = bytearray(2 * BY_REFERENCE)
    expected = bytearray()
    for fill in range(6):
        buffer[:] = bytes([fill]) * len(buffer)  # the caller refills the same buffer
        expected += buffer
        await sink.write(buffer)  # type: ignore[arg-type] # a caller breaking the bytes contract
    received = await sink.finish()
    assert bytes(writer.written) == bytes(expected)
    assert received.sha256 == hashlib.sha256(expected).hexdigest()
