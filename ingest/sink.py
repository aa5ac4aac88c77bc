"""BlobSink: the one sink every protocol writes through: counted, limited, hashed, written.

Multipart files, raw bodies and tus PATCH bodies all go through it, so every byte is
hashed on the same lane that writes it, whatever brought it.

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
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, cast

import anyio
import anyio.to_thread

from ingest.errors import FileTooLarge, IngestError, InsufficientStorage, StorageFailed
from ingest.storage.base import BlobWriter, PartialWriter, RecordsDigest, WritesPieces

LANE_DEPTH = 4  # blocks queued per lane: memory per upload <= (LANE_DEPTH + 1) * block_size
BY_REFERENCE = 64 * 1024  # chunks at least this big join a block by reference, smaller ones are copied

# One block: the chunks gathered for one hash-and-write step, in order.
Block = list[bytes | bytearray]
Item = TypeVar("Item")  # what one lane's work takes


class Hash(Protocol):
    """What the sink needs of a hashlib object."""

    def update(self, data: bytes | bytearray, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class Received:
    """What a finished sink holds: its size and SHA-256 (lowercase hex)."""

    size: int
    sha256: str


class BlobSink:
    """Counts, limits, hashes and writes one stream of bytes: an upload's file, or one PATCH
    of a resumable upload (`hashes` then continue the upload's SHA-256 and the chunk's
    checksum, and `overflow` names the error for a body past the upload's declared length).

    The chunk path is `add` (synchronous: count, limit, append); only when it says the block
    is full does the caller `await flush()`. `write` does both, for callers that don't mind.
    `lane_threads` runs the lane: the upload service's, made and ended with it.
    """

    def __init__(self, writer: BlobWriter | PartialWriter, *, lane_threads: Executor, max_size: int,
                 block_size: int,
                 on_block: Callable[[int], object] | None = None,
                 on_first_block: Callable[[Block], Awaitable[None]] | None = None,
                 hashes: Sequence[Hash] | None = None,
                 overflow: Callable[[int], IngestError] | None = None) -> None:
        self._writer = writer
        # Given the file's first block before it is stored (media type detection, which may
        # refuse the file by raising): once per file, never per chunk.
        self._on_first_block = on_first_block
        # Told the length of each block handed to the lane: metrics and progress are
        # updated per block, never per chunk, to keep the chunk path short.
        self._on_block = on_block
        self._max_size = max_size
        self._block_size = block_size
        self._hashes = tuple(hashes) if hashes is not None else (hashlib.sha256(),)
        self._overflow = overflow or _file_too_large
        self._block: Block = []
        self._block_bytes = 0
        self._lane: OrderedLane[Block] = OrderedLane(self._store, lane_threads)
        self._write_pieces = writer.write_pieces if isinstance(writer, WritesPieces) else None
        self.size = 0

    def add(self, chunk: bytes) -> bool:
        """Take `chunk` into the current block; True when the block is full (await `flush`).

        A chunk that would pass `max_size` is refused whole, and nothing of it is counted."""
        size = self.size + len(chunk)
        if size > self._max_size:
            raise self._overflow(size - self._max_size)
        self.size = size
        if len(chunk) >= BY_REFERENCE and type(chunk) is bytes:
            # Kept by reference: `bytes` cannot change, so the lane can hash and write it
            # later without the event loop copying it first (a mutable buffer is copied).
            self._block.append(chunk)
        elif self._block and type(self._block[-1]) is bytearray:
            self._block[-1] += chunk
        else:
            self._block.append(bytearray(chunk))
        self._block_bytes += len(chunk)
        return self._block_bytes >= self._block_size

    async def write(self, chunk: bytes) -> None:
        if self.add(chunk):
            await self.flush()

    async def flush(self) -> None:
        """Hand the current block to the lane, waiting for room first. Cancelled while it
        waits, the block stays here whole (counted, not yet hashed or written) for `drain`."""
        if not self._block:
            return
        check = self._on_first_block
        if check is not None:
            # Before anything of the file is stored. Cancelled while it runs, the check stays
            # due (the block with it) and runs again at `drain`; a refusal raises each time.
            await check(self._block)
            self._on_first_block = None
        await self._lane.wait_for_room()
        block, self._block = self._block, []
        block_bytes, self._block_bytes = self._block_bytes, 0
        self._lane.put(block)
        if self._on_block is not None:
            self._on_block(block_bytes)

    async def drain(self) -> None:
        """Hash and write every byte taken so far, and wait for it, even while cancelled."""
        with anyio.CancelScope(shield=True):
            await self.flush()
            await self._lane.join()

    def _store(self, block: Block) -> None:
        """Worker thread: hash each piece, then write it while it is still in the CPU cache;
        a writer that takes a whole block at once gets it after its pieces are hashed."""
        write = self._writer.write
        try:
            if self._write_pieces is not None:
                for hasher in self._hashes:
                    for piece in block:
                        hasher.update(piece)
                self._write_pieces(block)
            elif len(self._hashes) == 1:
                update = self._hashes[0].update
                for piece in block:
                    update(piece)
                    write(piece)
            else:
                for piece in block:
                    for hasher in self._hashes:
                        hasher.update(piece)
                    write(piece)
        except OSError as error:
            raise storage_error(error) from error

    async def finish(self) -> Received:
        """Write what is left and wait for it; the blob is complete but not yet committed."""
        await self.flush()
        await self._lane.join()
        return Received(size=self.size, sha256=self._hashes[0].hexdigest())

    async def commit(self, blob_id: str, *, sha256: str) -> None:
        """Make the blob visible as `blob_id`; `sha256` is kept beside the bytes by stores that
        can (S3 object metadata)."""
        writer = cast(BlobWriter, self._writer)  # a sink over a PartialWriter is drained, never committed
        if isinstance(writer, RecordsDigest):
            writer.record_sha256(sha256)
        try:
            await anyio.to_thread.run_sync(writer.commit, blob_id)
        except OSError as error:
            raise storage_error(error) from error

    async def abort(self) -> None:
        """Discard the blob. Waits for queued work first, so no write races the abort."""
        with anyio.CancelScope(shield=True):
            self._lane.cancel()
            # A failed write is already being reported by whoever called abort.
            with contextlib.suppress(Exception):
                await self._lane.join()
            writer = cast(BlobWriter, self._writer)
            await anyio.to_thread.run_sync(writer.abort)


def _file_too_large(excess: int) -> IngestError:
    return FileTooLarge(f"file is larger than the limit by {excess} bytes")


class OrderedLane(Generic[Item]):
    """Runs `work(item)` for each submitted item, in order, on `threads` (shared by all lanes).

    One thread hop serves a burst of queued items rather than one item, and at most
    LANE_DEPTH items wait: `submit` awaits room beyond that. The end of a burst is not sent
    to the event loop (that woke the loop once per block); `join` asks for it instead.
    """

    def __init__(self, work: Callable[[Item], object], threads: Executor) -> None:
        self._work = work
        self._threads = threads
        self._queue: deque[Item] = deque()
        self._lock = threading.Lock()
        self._running = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drained: Future[None] | None = None  # the latest burst

    async def submit(self, item: Item) -> None:
        await self.wait_for_room()
        self.put(item)

    async def wait_for_room(self) -> None:
        """Until fewer than LANE_DEPTH items wait; raises the error of a failed item."""
        self._raise_error()
        while len(self._queue) >= LANE_DEPTH:
            await self._wait()
            self._raise_error()

    def put(self, item: Item) -> None:
        """Queue `item` (after `wait_for_room`); starts a worker thread if none is running."""
        with self._lock:
            self._queue.append(item)
            start = not self._running
            self._running = True
        if start:
            self._loop = asyncio.get_running_loop()
            self._drained = self._threads.submit(self._drain)

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
