"""The upload service: storage and catalog kept in step, for every protocol.

Protocol modules (multipart, raw body) turn requests into `IncomingFile`s and hand them here,
with the request's context (ingest/observe/context.py; None outside a request).
`commit` makes a request's files visible all together or not at all: blobs are committed
first (each atomically), rows are added in one transaction after; any failure on the way
removes what was already committed. A crash between the two leaves blobs without rows,
which no client can see and the sweeper removes.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from ingest import crashpoints
from ingest.catalog.base import Catalog
from ingest.config import Settings
from ingest.content_rules import ContentRules, detect_in_thread, head_of
from ingest.edge.paths import OTHER, RAW, TUS
from ingest.errors import DigestMismatch, NotFound
from ingest.links.service import Links
from ingest.models import Link, StoredFile, new_file_id, utc_now
from ingest.observe.context import RequestContext
from ingest.observe.events import EventHub, Upload
from ingest.observe.metrics import Metrics
from ingest.sink import BlobSink, Block, Received
from ingest.storage.base import HasThreads, Storage

log = logging.getLogger("ingest.uploads")

UNLIMITED_UPLOADS_LANES = 64  # lane threads when max_concurrent_uploads is 0 (no limit)


@dataclass
class IncomingFile:
    """A file being received: where its bytes go and what the client said about it."""

    sink: BlobSink
    filename: str
    content_type: str
    expected_sha256: str | None = None
    received: Received | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    detected_type: str | None = None
    type_checked: bool = False  # the content rules have seen the first bytes
    # The link reservation the commit turns into use; `release_on_failure`: it belongs to the
    # request (multipart, raw), not to a tus upload that outlives it.
    reservation: str | None = None
    release_on_failure: bool = False
    # The upload as events and metrics see it; its id becomes the stored file's id.
    upload: Upload = field(default_factory=lambda: Upload(id=new_file_id(), protocol=OTHER,
                                                          filename="", content_type=""))
    # The request that sends the file (multipart, raw), which counts the files it finished.
    request: RequestContext | None = None


class UploadService:
    def __init__(self, settings: Settings, storage: Storage, catalog: Catalog,
                 events: EventHub | None = None) -> None:
        self.settings = settings
        self.storage = storage
        self.catalog = catalog
        self.events = events or EventHub(Metrics())
        self.rules = ContentRules(accept=settings.accept, on_type_mismatch=settings.on_type_mismatch)
        self.links = Links(catalog, request_hold_seconds=settings.temp_max_age)
        self._lane_threads: ThreadPoolExecutor | None = None

    @property
    def writers(self) -> int:
        """Blobs written at once at most: one per upload received (a request's files are
        written one after the other)."""
        return self.settings.max_concurrent_uploads or UNLIMITED_UPLOADS_LANES

    @property
    def lane_threads(self) -> ThreadPoolExecutor:
        """The threads that hash and write sinks' blocks (ingest/sink.py), one per writer."""
        if self._lane_threads is None:
            raise RuntimeError("UploadService.start() was not called: no threads to write blocks")
        return self._lane_threads

    async def start(self) -> None:
        """Make the threads uploads are written on, open the catalog, sweep what a crash left."""
        self._lane_threads = ThreadPoolExecutor(max_workers=self.writers, thread_name_prefix="ingest-io")
        if isinstance(self.storage, HasThreads):
            self.storage.start(writers=self.writers)
        await self.catalog.open()
        await self.sweep(temp_older_than=self.settings.temp_max_age)

    async def stop(self) -> None:
        """After the last request: close the catalog and end the threads."""
        await self.catalog.close()
        lane_threads, self._lane_threads = self._lane_threads, None
        if lane_threads is not None:
            await anyio.to_thread.run_sync(lane_threads.shutdown)
        if isinstance(self.storage, HasThreads):
            await anyio.to_thread.run_sync(self.storage.stop)

    async def new_file(self, *, filename: str, content_type: str, request: RequestContext | None,
                       expected_sha256: str | None = None) -> IncomingFile:
        """Run pre-create (which may refuse, raising), then open a temporary blob. `request`
        labels its events and metrics, and its upload link limits the file."""
        upload = Upload(id=new_file_id(), protocol=request.protocol if request else OTHER,
                        filename=filename, content_type=content_type)
        if request is not None:
            upload.client = request.client
            upload.request_id = request.request_id
            upload.forwarded_headers = request.forwarded_headers
            if request.protocol == RAW:
                upload.expected_size = request.content_length
            upload.token = request.token
            upload.link = request.link.id if request.link else None
        max_size = self.settings.max_file_size
        reservation = None
        if request is not None and request.link is not None and request.protocol != TUS:
            max_size = min(max_size, await self._reserve(request, request.link))
            reservation = request.request_id
        try:
            await self.events.create(upload)
            try:
                writer = await anyio.to_thread.run_sync(self.storage.create)
            except BaseException:
                self.events.failed(upload)
                raise
        except BaseException:
            if reservation is not None:
                with anyio.CancelScope(shield=True):
                    await self.links.release(reservation)
            raise
        incoming: IncomingFile

        async def first_block(block: Block) -> None:
            await self.check_type(incoming, head_of(block))

        sink = BlobSink(writer, lane_threads=self.lane_threads, max_size=max_size,
                        block_size=self.settings.block_size,
                        on_block=functools.partial(self.events.received, upload),
                        on_first_block=first_block)
        incoming = IncomingFile(sink=sink, filename=filename, content_type=content_type,
                                expected_sha256=expected_sha256, upload=upload, request=request,
                                reservation=reservation, release_on_failure=reservation is not None)
        return incoming

    async def _reserve(self, request: RequestContext, link: Link) -> int:
        """Reserve this file of a link-authorised request (its bytes with its first file) and
        return how large the file may be."""
        if request.link_bytes_reserved is None:
            granted = await self.links.reserve(
                link, request.request_id, size=request.content_length, exact=request.protocol == RAW,
                files=1, held_by_request=True)
            request.link_bytes_reserved = granted
        else:
            await self.links.reserve(link, request.request_id, size=0, exact=False, files=1,
                                     held_by_request=True)
        if link.max_size is None:
            return self.settings.max_file_size
        return max(0, request.link_bytes_reserved - request.link_bytes_spent)

    async def check_type(self, incoming: IncomingFile, head: bytes) -> None:
        """Detect the media type from the file's first bytes, record it, apply the content
        rules (415 unsupported_file_type). Once per file: its first block, or its end."""
        if incoming.type_checked:
            return
        incoming.type_checked = True
        incoming.detected_type = await self.inspect(
            head, filename=incoming.filename, content_type=incoming.content_type, upload=incoming.upload,
            request=incoming.request)

    async def inspect(self, head: bytes, *, filename: str, content_type: str, upload: Upload,
                      request: RequestContext | None) -> str | None:
        """The media type of a file starting with `head`, recorded on its upload; raises
        UnsupportedFileType when the server's content rules (or `request`'s upload link)
        refuse it."""
        detected = upload.detected_type = await detect_in_thread(head)
        link_accept = request.link.accept if request is not None and request.link is not None else ()
        self.rules.check(filename=filename, declared=content_type, detected=detected, also_accept=link_accept)
        return detected

    async def finish(self, incoming: IncomingFile) -> None:
        """All bytes are in: flush the last block and record size and SHA-256."""
        incoming.received = await incoming.sink.finish()
        await self.check_type(incoming, b"")  # an empty file: no first block was seen
        incoming.upload.size = incoming.received.size
        incoming.upload.sha256 = incoming.received.sha256
        request = incoming.request
        if request is not None:
            request.files_received += 1
            request.link_bytes_spent += incoming.received.size

    async def commit(self, incoming_files: Sequence[IncomingFile]) -> list[StoredFile]:
        """Check digests, then make every file visible, or none. On failure all is discarded."""
        committed: list[StoredFile] = []
        try:
            for incoming in incoming_files:
                if incoming.received is None:
                    await self.finish(incoming)
                assert incoming.received is not None
                incoming.upload.size = incoming.received.size
                incoming.upload.sha256 = incoming.received.sha256
                try:
                    _check_digest(incoming)
                except DigestMismatch:
                    self.events.digest_mismatch(incoming.upload.protocol)
                    raise
            for incoming in incoming_files:
                # Metadata a pre-create hook set wins over what the client sent.
                incoming.upload.metadata = {**incoming.metadata, **incoming.upload.metadata_changes}
                await self.events.finishing(incoming.upload)
            for incoming in incoming_files:
                assert incoming.received is not None
                stored = StoredFile(
                    id=incoming.upload.id, filename=incoming.filename, size=incoming.received.size,
                    sha256=incoming.received.sha256, content_type=incoming.content_type,
                    created_at=utc_now(), metadata=incoming.upload.metadata,
                    detected_type=incoming.detected_type, link=incoming.upload.link,
                    token=incoming.upload.token)
                await incoming.sink.commit(stored.id, sha256=stored.sha256)
                committed.append(stored)
                crashpoints.reached("blob.committed")
            await self.catalog.add(committed, release=_reservations(incoming_files))
            crashpoints.reached("rows.inserted")
        except BaseException as error:
            with anyio.CancelScope(shield=True):
                await self._release(incoming_files)
                await self.discard(incoming_files[len(committed):], error)
                for stored in committed:
                    await anyio.to_thread.run_sync(self.storage.delete, stored.id)
                for incoming in incoming_files:
                    self.events.failed(incoming.upload, error)
            raise
        for incoming in incoming_files:
            self.events.finished(incoming.upload)
        return committed

    async def discard(self, incoming_files: Sequence[IncomingFile], error: BaseException | None = None) -> None:
        """Abort every sink; never raises, so the original error is the one reported.

        Called from `except` blocks: without `error`, the exception being handled is the
        reason given to metrics and post-terminate hooks."""
        error = error or sys.exception()
        with anyio.CancelScope(shield=True):
            await self._release(incoming_files)
            for incoming in incoming_files:
                try:
                    await incoming.sink.abort()
                except Exception:
                    log.exception("could not discard a temporary file of %r", incoming.filename)
                self.events.failed(incoming.upload, error)

    async def _release(self, incoming_files: Sequence[IncomingFile]) -> None:
        """Give back the link reservations of a failed request; never raises (the sweep of
        expired reservations is the fallback)."""
        keys = _reservations([i for i in incoming_files if i.release_on_failure])
        try:
            await self.links.release(*keys)
        except Exception:
            log.exception("could not release the link reservations %s", keys)

    async def get(self, file_id: str) -> StoredFile:
        stored = await self.catalog.get(file_id)
        if stored is None:
            raise NotFound(f"no stored file with id {file_id!r}")
        return stored

    async def page(self, *, limit: int, after: tuple[str, str] | None,
                   link: str | None = None) -> list[StoredFile]:
        return await self.catalog.page(limit=limit, after=after, link=link)

    async def delete(self, file_id: str, *, request: RequestContext | None) -> StoredFile:
        """Row first, then bytes: a crash in between leaves only an invisible orphan blob.
        `request` labels the deleted event."""
        stored = await self.catalog.remove(file_id)
        if stored is None:
            raise NotFound(f"no stored file with id {file_id!r}")
        await anyio.to_thread.run_sync(self.storage.delete, stored.id)
        self.events.deleted(Upload(
            id=stored.id, protocol=request.protocol if request else OTHER, filename=stored.filename,
            content_type=stored.content_type, client=request.client if request else None,
            metadata=stored.metadata, size=stored.size, sha256=stored.sha256,
            request_id=request.request_id if request else None))
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



def _reservations(incoming_files: Sequence[IncomingFile]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i.reservation for i in incoming_files if i.reservation is not None))


def _check_digest(incoming: IncomingFile) -> None:
    assert incoming.received is not None
    expected, actual = incoming.expected_sha256, incoming.received.sha256
    if expected is not None and expected != actual:
        raise DigestMismatch(f"{incoming.filename}: the received bytes have sha256 {actual}, "
                             f"the client said {expected}; nothing was stored")
