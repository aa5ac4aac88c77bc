"""BlobSink: what it stores and hashes, whatever the sizes and kinds of the chunks it is given."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ingest.catalog.sqlite import SqliteCatalog
from ingest.config import Settings
from ingest.errors import InsufficientStorage
from ingest.sink import BY_REFERENCE, BlobSink
from ingest.storage.local import LocalStorage
from ingest.uploads import UploadService


@pytest.fixture
def lane_threads() -> Iterator[ThreadPoolExecutor]:
    threads = ThreadPoolExecutor(max_workers=4)
    yield threads
    threads.shutdown()


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
async def test_sink_stores_and_hashes_large_and_small_chunks_in_order(lane_threads: ThreadPoolExecutor) -> None:
    chunks = [os.urandom(size) for size in (BY_REFERENCE, 10, 3, BY_REFERENCE * 5, 1, BY_REFERENCE - 1, 700_000)] * 3
    writer = MemoryWriter()
    sink = BlobSink(writer, lane_threads=lane_threads, max_size=1 << 30, block_size=256 * 1024)
    for chunk in chunks:
        await sink.write(chunk)
    received = await sink.finish()
    expected = b"".join(chunks)
    assert bytes(writer.written) == expected
    assert received.size == len(expected)
    assert received.sha256 == hashlib.sha256(expected).hexdigest()


@pytest.mark.anyio
async def test_sink_copies_a_mutable_buffer_its_caller_reuses(lane_threads: ThreadPoolExecutor) -> None:
    writer = MemoryWriter()
    sink = BlobSink(writer, lane_threads=lane_threads, max_size=1 << 30, block_size=4 * BY_REFERENCE)
    buffer = bytearray(2 * BY_REFERENCE)
    expected = bytearray()
    for fill in range(6):
        buffer[:] = bytes([fill]) * len(buffer)  # the caller refills the same buffer
        expected += buffer
        await sink.write(buffer)  # type: ignore[arg-type] # a caller breaking the bytes contract
    received = await sink.finish()
    assert bytes(writer.written) == bytes(expected)
    assert received.sha256 == hashlib.sha256(expected).hexdigest()


class FailingWriter(MemoryWriter):
    """Fails with ENOSPC once `room` bytes are written."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self.aborted = False

    def write(self, data: bytes | bytearray) -> None:
        if len(self.written) + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(data)

    def abort(self) -> None:
        self.aborted = True


@pytest.mark.anyio
async def test_sink_reports_each_block_once_with_its_length(lane_threads: ThreadPoolExecutor) -> None:
    blocks: list[int] = []
    sink = BlobSink(MemoryWriter(), lane_threads=lane_threads, max_size=1 << 30, block_size=4 * BY_REFERENCE,
                    on_block=blocks.append)
    for _ in range(9):
        await sink.write(os.urandom(BY_REFERENCE + 7))
    received = await sink.finish()
    assert sum(blocks) == received.size == 9 * (BY_REFERENCE + 7)
    assert all(length >= 4 * BY_REFERENCE for length in blocks[:-1])


@pytest.mark.anyio
async def test_sink_turns_a_full_disk_into_insufficient_storage_and_aborts_cleanly(
        lane_threads: ThreadPoolExecutor) -> None:
    writer = FailingWriter(room=3 * BY_REFERENCE)
    sink = BlobSink(writer, lane_threads=lane_threads, max_size=1 << 30, block_size=BY_REFERENCE)
    with pytest.raises(InsufficientStorage):
        for _ in range(16):
            await sink.write(os.urandom(BY_REFERENCE))
        await sink.finish()
    await sink.abort()
    assert writer.aborted
    assert len(writer.written) <= 3 * BY_REFERENCE


@pytest.mark.anyio
async def test_the_upload_service_makes_the_lane_threads_when_it_starts_and_ends_them_when_it_stops(
        settings: Settings) -> None:
    storage = LocalStorage(settings.data_dir, fsync=False)
    storage.prepare()
    service = UploadService(settings.replace(max_concurrent_uploads=3), storage,
                            SqliteCatalog(settings.catalog_path))
    with pytest.raises(RuntimeError, match="start"):
        _ = service.lane_threads
    await service.start()
    lane_threads = service.lane_threads
    assert lane_threads._max_workers == 3  # one per upload received at once
    incoming = await service.new_file(filename="a.bin", content_type="application/octet-stream", request=None)
    await incoming.sink.write(os.urandom(BY_REFERENCE))
    await service.commit([incoming])
    await service.stop()
    with pytest.raises(RuntimeError):
        lane_threads.submit(print)  # shut down
    with pytest.raises(RuntimeError, match="start"):
        _ = service.lane_threads
