"""The upload service: storage and catalog kept in step, for every protocol.

Protocol modules (multipart, raw body) turn requests into `IncomingFile`s and hand them here.
`commit` makes a request's files visible all together or not at all: blobs are committed
first (each atomically), rows are added in one transaction after; any failure on the way
removes what was already committed. A crash between the two leaves blobs without rows,
which no client can see and the sweeper removes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from ingest.catalog.base import Catalog
from ingest.config import Settings
from ingest.errors import DigestMismatch, NotFound
from ingest.models import StoredFile, new_file_id, utc_now
from ingest.sink import BlobSink, Received
from ingest.storage.base import Storage

log = logging.getLogger("ingest.uploads")


@dataclass
class IncomingFile:
    """A file being received: where its bytes go and what the client said about it."""

    sink: BlobSink
    filename: str
    content_type: str
    expected_sha256: str | None = None
    received: Received | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class UploadService:
    def __init__(self, settings: Settings, storage: Storage, catalog: Catalog) -> None:
        self.settings = settings
        self.storage = storage
        self.catalog = catalog

    async def start(self) -> None:
        await self.catalog.open()
        await self.sweep(temp_older_than=self.settings.temp_max_age)

    async def stop(self) -> None:
        await self.catalog.close()

    async def new_file(self, *, filename: str, content_type: str,
                       expected_sha256: str | None = None) -> IncomingFile:
        writer = await anyio.to_thread.run_sync(self.storage.create)
        sink = BlobSink(writer, max_size=self.settings.max_file_size,
                        block_size=self.settings.block_size)
        return IncomingFile(sink=sink, filename=filename, content_type=content_type,
                            expected_sha256=expected_sha256)

    async def finish(self, incoming: IncomingFile) -> None:
        """All bytes are in: flush the last block and record size and SHA-256."""
        incoming.received = await incoming.sink.finish()

    async def commit(self, incoming_files: Sequence[IncomingFile]) -> list[StoredFile]:
        """Check digests, then make every file visible, or none. On failure all is discarded."""
        committed: list[StoredFile] = []
        try:
            for incoming in incoming_files:
                if incoming.received is None:
                    await self.finish(incoming)
                _check_digest(incoming)
            for incoming in incoming_files:
                assert incoming.received is not None
                stored = StoredFile(
                    id=new_file_id(), filename=incoming.filename, size=incoming.received.size,
                    sha256=incoming.received.sha256, content_type=incoming.content_type,
                    created_at=utc_now(), metadata=incoming.metadata)
                await incoming.sink.commit(stored.id, sha256=stored.sha256)
                committed.append(stored)
            await self.catalog.add(committed)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.discard(incoming_files[len(committed):])
                for stored in committed:
                    await anyio.to_thread.run_sync(self.storage.delete, stored.id)
            raise
        return committed

    async def discard(self, incoming_files: Sequence[IncomingFile]) -> None:
        """Abort every sink; never raises, so the original error is the one reported."""
        with anyio.CancelScope(shield=True):
            for incoming in incoming_files:
                try:
                    await incoming.sink.abort()
                except Exception:
                    log.exception("could not discard a temporary file of %r", incoming.filename)

    async def get(self, file_id: str) -> StoredFile:
        stored = await self.catalog.get(file_id)
        if stored is None:
            raise NotFound(f"no stored file with id {file_id!r}")
        return stored

    async def page(self, *, limit: int, after: tuple[str, str] | None) -> list[StoredFile]:
        return await self.catalog.page(limit=limit, after=after)

    async def delete(self, file_id: str) -> StoredFile:
        """Row first, then bytes: a crash in between leaves only an invisible orphan blob."""
        stored = await self.catalog.remove(file_id)
        if stored is None:
            raise NotFound(f"no stored file with id {file_id!r}")
        await anyio.to_thread.run_sync(self.storage.delete, stored.id)
        return stored

    async def sweep(self, *, temp_older_than: float) -> None:
        """Reclaim temp files of dead uploads and committed blobs that never got a row."""
        removed_temp = await anyio.to_thread.run_sync(
            lambda: self.storage.sweep_temporary(older_than=temp_older_than))
        known = await self.catalog.file_ids()
        candidates = await anyio.to_thread.run_sync(
            lambda: self.storage.blob_ids(older_than=self.settings.temp_max_age))
        orphans = [blob_id for blob_id in candidates if blob_id not in known]
        for blob_id in orphans:
            await anyio.to_thread.run_sync(self.storage.delete, blob_id)
        if removed_temp or orphans:
            log.info("swept %d temporary files and %d orphaned blobs", removed_temp, len(orphans))



def _check_digest(incoming: IncomingFile) -> None:
    assert incoming.received is not None
    expected, actual = incoming.expected_sha256, incoming.received.sha256
    if expected is not None and expected != actual:
        raise DigestMismatch(f"{incoming.filename}: the received bytes have sha256 {actual}, "
                             f"the client said {expected}; nothing was stored")
