"""BlobSink: one file on its way into storage, counted, limited and hashed as it streams.

The event loop only gathers chunks into a block (1 MiB by default): large `bytes` chunks by
reference, small ones copied together, so the body is not copied on the loop. Full blocks go to
one ordered lane on a worker thread, which runs beside the parsing of the next blocks: hashlib and
`os.write` release the GIL. The lane hashes each piece of a block and writes it right after,
while it is still in the CPU cache: measured, that costs less CPU than a hash lane and a write
lane side by side (each reading every block from memory, and two thread hand-offs per block),
and one thread still hashes and writes faster than the event loop receives and parses.
A few blocks may queue, so the event loop rarely waits and keeps reading the socket; when the
lane is full, the sink awaits room, and that is what pushes back on the client (uvicorn stops
reading the socket while the app does not ask for more).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

from ingest.errors import FileTooLarge, IngestError, InsufficientStorage, StorageFailed
from ingest.storage.base import BlobWriter, RecordsDigest

_io_threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="ingest-io")

LANE_DEPTH = 4  # blocks queued per lane: memory per upload <= (LANE_DEPTH + 1) * block_size
BY_REFERENCE = 64 * 1024  # chunks at least this big join a block by reference, smaller ones are copied

# One block: the chunks gathered for one hash-and-write step, in order.
Block = list[bytes | bytearray]
Item = TypeVar("Item")  # what one lane's work takes: a Block here, a bytearray for tus


@dataclass(frozen=True)
class Received:
    """What a finished sink holds: its size and SHA-256 (lowercase hex)."""

    size: int
    sha256: str


class BlobSink:
    def __init__(self, writer: BlobWriter, *, max_size: int, block_size: int,
                 on_block: Callable[[int], object] | None = None,
                 on_first_block: Callable[[Block], Awaitable[None]] | None = None) -> None:
        self._writer = writer
        # Given the file's first block before it is stored (media type detection, which may
        # refuse the file by raising): once per file, never per chunk.
        self._on_first_block = on_first_block
        # Told the length of each block handed to the lanes: metrics and progress are
        # updated per block, never per chunk, to keep the chunk path short.
        self._on_block = on_block
        self._max_size = max_size
        self._block_size = block_size
        self._hasher = hashlib.sha256()
        self._block: Block = []
        self._block_bytes = 0
        self._lane: OrderedLane[Block] = OrderedLane(self._store)
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_size:
            raise FileTooLarge(f"file is larger than the limit of {self._max_size} bytes")
        if len(chunk) >= BY_REFERENCE and type(chunk) is bytes:
            # Kept by reference: `bytes` cannot change, so the lanes can hash and write it
            # later without the event loop copying it first (a mutable buffer is copied).
            self._block.append(chunk)
        elif self._block and isinstance(self._block[-1], bytearray):
            self._block[-1] += chunk
        else:
            self._block.append(bytearray(chunk))
        self._block_bytes += len(chunk)
        if self._block_bytes >= self._block_size:
            await self._flush()

    async def _flush(self) -> None:
        block, self._block = self._block, []
        block_bytes, self._block_bytes = self._block_bytes, 0
        if block:
            if self._on_first_block is not None:
                on_first_block, self._on_first_block = self._on_first_block, None
                await on_first_block(block)
            await self._lane.submit(block)
            if self._on_block is not None:
                self._on_block(block_bytes)

    def _store(self, block: Block) -> None:
        """Worker thread: hash each piece, then write it while it is still in the CPU cache."""
        update, write = self._hasher.update, self._writer.write
        try:
            for piece in block:
                update(piece)
                write(piece)
        except OSError as error:
            raise storage_error(error) from error

    async def finish(self) -> Received:
        """Write what is left and wait for it; the blob is complete but not yet committed."""
        await self._flush()
        await self._lane.join()
        return Received(size=self.size, sha256=self._hasher.hexdigest())

    async def commit(self, blob_id: str, *, sha256: str) -> None:
        """Make the blob visible as `blob_id`; `sha256` is kept beside the bytes by stores that
        can (S3 object metadata)."""
        if isinstance(self._writer, RecordsDigest):
            self._writer.record_sha256(sha256)
        try:
            await anyio.to_thread.run_sync(self._writer.commit, blob_id)
        except OSError as error:
            raise storage_error(error) from error

    async def abort(self) -> None:
        """Discard the blob. Waits for queued work first, so no write races the abort."""
        with anyio.CancelScope(shield=True):
            self._lane.cancel()
            # A failed write is already being reported by whoever called abort.
            with contextlib.suppress(Exception):
                await self._lane.join()
            await anyio.to_thread.run_sync(self._writer.abort)


class OrderedLane(Generic[Item]):
    """Runs `work(item)` for each submitted item, in order, on the shared I/O threads.

    One thread hop serves a burst of queued items rather than one item, and at most
    LANE_DEPTH items wait: `submit` awaits room beyond that. The end of a burst is not sent
    to the event loop (that woke the loop once per block); `join` asks for it instead.
    """

    def __init__(self, work: Callable[[Item], object]) -> None:
        self._work = work
        self._queue: deque[Item] = deque()
        self._lock = threading.Lock()
        self._running = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drained: Future[None] | None = None  # the latest burst

    async def submit(self, item: Item) -> None:
        self._raise_error()
        while len(self._queue) >= LANE_DEPTH:
            await self._wait()
            self._raise_error()
        with self._lock:
            self._queue.append(item)
            start = not self._running
            self._running = True
        if start:
            self._loop = asyncio.get_running_loop()
            self._drained = _io_threads.submit(self._drain)

    async def join(self) -> None:
        if self._drained is not None:
            await asyncio.wrap_future(self._drained)
        self._raise_error()

    def cancel(self) -> None:
        """Drop queued items that have not started."""
        self._cancelled = True

    async def _wait(self) -> None:
        assert self._loop is not None
        with self._lock:
            if len(self._queue) < LANE_DEPTH or not self._running:
                return
            self._waiter = waiter = self._loop.create_future()
        await waiter

    def _drain(self) -> None:
        """Worker thread: process items until the queue is empty."""
        while True:
            with self._lock:
                if not self._queue or self._error is not None:
                    self._running = False
                    self._queue.clear()
                    self._wake()
                    return
                item = self._queue[0]
            if not self._cancelled:
                try:
                    self._work(item)
                except BaseException as error:
                    self._error = error
            with self._lock:
                self._queue.popleft()
                self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, waiter)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def storage_error(error: OSError) -> IngestError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("the server has no space left to store this upload")
    return StorageFailed(f"storage failed: {error.strerror or error}")
