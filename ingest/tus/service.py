"""The tus upload service: create, append and commit. Partial uploads live in resumable
storage; finished ones are committed through `UploadService` like any other file (atomic,
SHA-256 recorded, catalog row).

Protocol details (headers, statuses) live in `headers.py` and `http.py`; this module speaks
in upload ids, offsets and byte streams. Beside it: the upload's state record (`upload.py`),
its events (`tracking.py`), its running SHA-256 (`prefix_hashes.py`), the expiry sweep
(`expiry.py`) and start-up recovery (`recovery.py`).

Crashes (README "Crashes"): the stored file of an upload has the upload's id, so a commit cut
anywhere is finished from storage alone — an existing blob is adopted, an existing row only
marks the upload done — at start-up (ingest/tus/recovery.py) or by the next HEAD or PATCH. A
checksummed PATCH records in the state, before its first byte, the offset it started from
(`unverified_from`); until the state says it was verified, that offset is the upload's, and
the next writer cuts the bytes beyond it off.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from ingest import crashpoints
from ingest.config import Settings
from ingest.content_rules import head_of
from ingest.edge.body import RequestBody
from ingest.errors import (
    ChecksumMismatch,
    FileTooLarge,
    Forbidden,
    IngestError,
    InvalidRequest,
    LinkExpired,
    LinkLimitExceeded,
    NotFound,
    OffsetMismatch,
    UnsupportedFileType,
    UploadExpired,
    UploadLengthExceeded,
    UploadLocked,
    UploadNotPatchable,
    UploadSuperseded,
)
from ingest.models import Link, utc_now
from ingest.observe.context import RequestContext
from ingest.observe.events import HookRejected
from ingest.sink import BlobSink, Block, Received
from ingest.storage.base import PartialBusy, PartialWriter, ResumableStorage
from ingest.tus.expiry import sweep_expired
from ingest.tus.headers import CHECKSUM_ALGORITHMS
from ingest.tus.locks import RemoteHandOver, UploadLocks
from ingest.tus.prefix_hashes import PrefixHashes
from ingest.tus.tracking import TrackedUploads
from ingest.tus.upload import TusUpload, extra_metadata, name_and_type
from ingest.uploads import IncomingFile, UploadService

__all__ = ["TusService", "TusUpload"]

log = logging.getLogger("ingest.tus")

HANDOVER_WAIT_SECONDS = 10.0  # how long a PATCH waits for another node to hand an upload over


class TusService:
    def __init__(self, settings: Settings, uploads: UploadService, storage: ResumableStorage,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.uploads = uploads
        self.storage = storage
        self.clock = clock
        self.locks = UploadLocks()
        self.handover: RemoteHandOver | None = None  # set when nodes share a PostgreSQL catalog
        self.tracked = TrackedUploads(uploads.events)  # each unfinished upload's events
        self.hashes = PrefixHashes(storage, block_size=settings.block_size)

    # --- creation ---------------------------------------------------------------------------

    async def create(self, *, length: int | None, metadata: dict[str, str], request: RequestContext | None,
                     partial: bool = False) -> TusUpload:
        """A new upload; `request` (its token, its upload link) becomes its owner."""
        if length is not None and length > self.settings.max_file_size:
            raise FileTooLarge(f"Upload-Length {length} exceeds the limit of "
                               f"{self.settings.max_file_size} bytes")
        if not partial:
            name_and_type(metadata, "x")  # refuse a bad filename now, not after the upload
        now = self.clock()
        upload = TusUpload(upload_id=uuid.uuid4().hex, length=length, metadata=metadata,
                           created_at=now, expires_at=now + self.settings.tus_expiry,
                           concat="partial" if partial else None)
        if request is not None:
            upload.token = request.token
            if request.link is not None:
                await self._reserve(upload, request.link)
        try:
            return await self._create(upload, length, partial, request)
        except BaseException:
            if upload.link is not None:
                with anyio.CancelScope(shield=True):
                    await self.uploads.links.release(upload.upload_id)
            raise

    async def _reserve(self, upload: TusUpload, link: Link) -> None:
        """An upload link's reservation for this upload: its length (or, deferred, all that is
        left), held until the upload is stored, terminated or expired."""
        if upload.concat is not None:
            raise Forbidden("an upload link takes whole uploads; concatenation needs a token")
        granted = await self.uploads.links.reserve(link, upload.upload_id, size=upload.length,
                                                   exact=True, files=1, held_by_request=False)
        upload.link = link.id
        upload.reserved = granted if link.max_size is not None else None

    async def _create(self, upload: TusUpload, length: int | None, partial: bool,
                      request: RequestContext | None) -> TusUpload:
        if not partial:
            # pre-create may refuse (HookRejected) before anything exists; partial uploads
            # have no events of their own: the final upload that concatenates them has.
            event = self.tracked.event_of(upload, request, register=False)
            await self.uploads.events.create(event)
            self.tracked.track(upload.upload_id, event)
        try:
            await anyio.to_thread.run_sync(self.storage.create_partial, upload.upload_id, upload.state())
        except BaseException as error:
            self.tracked.end(upload.upload_id, error)
            raise
        if length == 0 and not partial:
            async with self.locks.hold(upload.upload_id):
                try:
                    await self.commit(upload, request)
                except UnsupportedFileType as error:
                    await anyio.to_thread.run_sync(self.storage.terminate_partial, upload.upload_id)
                    await self.release_link(upload.upload_id, upload.state())
                    self.tracked.end(upload.upload_id, error)
                    raise
        return upload

    async def concatenate(self, part_ids: list[str], metadata: dict[str, str], *,
                          request: RequestContext | None) -> TusUpload:
        """Creation of a final upload: the complete partial uploads, in order, as one file."""
        filename, content_type = name_and_type(metadata, "upload")
        if len(set(part_ids)) < len(part_ids):
            # Refused rather than read twice: the parts are deleted once concatenated, and a
            # second hold of a lock this request already holds would wait for itself forever.
            raise InvalidRequest("Upload-Concat names a partial upload more than once")
        async with contextlib.AsyncExitStack() as stack:
            parts = []
            for part_id in part_ids:
                await stack.enter_async_context(self.locks.hold(part_id))
                part = await self._load(part_id)
                if part.concat != "partial" or not part.complete:
                    raise InvalidRequest(f"upload {part_id} is not a complete partial upload")
                parts.append(part)
            total = sum(part.offset for part in parts)
            if total > self.settings.max_file_size:
                raise FileTooLarge(f"the concatenation of {total} bytes exceeds the limit of "
                                   f"{self.settings.max_file_size} bytes")
            incoming = await self.uploads.new_file(filename=filename, content_type=content_type,
                                                   request=request)
            incoming.metadata = extra_metadata(metadata)
            try:
                for part in parts:
                    blocks = self.storage.read_partial(part.upload_id, end=part.offset,
                                                       block_size=self.settings.block_size)
                    # One worker-thread hop per block: reading never blocks the event loop.
                    while (block := await anyio.to_thread.run_sync(next, blocks, None)) is not None:
                        await incoming.sink.write(block)
            except BaseException:
                await self.uploads.discard([incoming])
                raise
            [stored] = await self.uploads.commit([incoming])
            now = self.clock()
            final = TusUpload(upload_id=uuid.uuid4().hex, length=total, metadata=metadata,
                              created_at=now, expires_at=now + self.settings.tus_expiry,
                              concat="final", parts=part_ids, file_id=stored.id, offset=total)
            await anyio.to_thread.run_sync(self.storage.create_partial, final.upload_id, final.state())
            await anyio.to_thread.run_sync(
                lambda: self.storage.terminate_partial(final.upload_id, keep_state=True))
            # The tus spec lets the server delete partial uploads once concatenated (§Concatenation).
            for part in parts:
                await anyio.to_thread.run_sync(self.storage.terminate_partial, part.upload_id)
        return final

    # --- reading state ----------------------------------------------------------------------

    async def info(self, upload_id: str, *, request: RequestContext | None) -> TusUpload:
        """The upload's state. Like tusd, taking the lock asks a running PATCH to stop and save,
        so a client resuming after a dropped connection learns the true offset at once."""
        async with self.locks.hold(upload_id):
            if self.handover is not None:  # the same across nodes
                await self.handover.settle(upload_id, wait_seconds=HANDOVER_WAIT_SECONDS)
            upload = await self._load(upload_id)
            _check_owner(upload.link, request)
            await self._commit_if_whole(upload, request)
            return upload

    async def _load(self, upload_id: str) -> TusUpload:
        try:
            state, offset = await anyio.to_thread.run_sync(self.storage.partial_state, upload_id)
        except KeyError:
            raise NotFound(f"no upload with id {upload_id!r}") from None
        upload = TusUpload.from_state(upload_id, state, offset)
        if upload.file_id is None and upload.expires_at <= self.clock():
            raise UploadExpired(f"upload {upload_id} expired and will be removed")
        return upload

    # --- writing ----------------------------------------------------------------------------

    async def write(self, upload_id: str, *, offset: int, body: RequestBody,
                    request: RequestContext | None, checksum: tuple[str, bytes] | None = None,
                    length: int | None = None) -> TusUpload:
        async with self.locks.hold(upload_id) as holder:
            upload = await self._load(upload_id)
            _check_owner(upload.link, request)
            if upload.concat == "final":
                raise UploadNotPatchable("a final (concatenated) upload takes no PATCH")
            if length is not None and length != upload.length:
                await self._declare_length(upload, length)
            if offset != upload.offset:
                raise OffsetMismatch(f"Upload-Offset is {offset}, the upload holds {upload.offset} bytes",
                                     headers={"upload-offset": str(upload.offset)})
            failure: IngestError | None = None
            try:
                if upload.file_id is None and not upload.complete:
                    await self._append(upload, holder.body_scope, body, checksum, request)
                else:
                    if await body.read():
                        raise UploadLengthExceeded("the upload is complete; it takes no more bytes")
            except IngestError as error:
                failure = error  # raised once the upload is committed, if it is whole
            if isinstance(failure, UnsupportedFileType):
                # Refused at its first bytes: the upload is terminated, nothing of it kept.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.storage.terminate_partial, upload_id)
                    await self.release_link(upload.upload_id, upload.state())
                self.hashes.forget(upload_id)
                self.tracked.end(upload_id, failure)
                raise failure
            await self._commit_if_whole(upload, request)
            if failure is not None:
                raise failure
            if holder.superseded:
                raise UploadSuperseded("a newer request for this upload took over")
            return upload

    async def _check_type(self, upload: TusUpload, head: bytes, request: RequestContext | None) -> None:
        """The first bytes of the upload have arrived: detect and apply the content rules."""
        filename, content_type = name_and_type(upload.metadata, f"upload-{upload.upload_id}")
        upload.type_checked = True
        upload.detected_type = await self.uploads.inspect(
            head, filename=filename, content_type=content_type, upload=self.tracked.event_of(upload, request),
            request=request)

    async def _declare_length(self, upload: TusUpload, length: int) -> None:
        """creation-defer-length: the first PATCH that knows the length says it, once."""
        if upload.length is not None:
            raise InvalidRequest(f"Upload-Length is already {upload.length}")
        if length < upload.offset:
            raise InvalidRequest(f"Upload-Length {length} is below the {upload.offset} bytes stored")
        if length > self.settings.max_file_size:
            raise FileTooLarge(f"Upload-Length {length} exceeds the limit of "
                               f"{self.settings.max_file_size} bytes")
        if upload.reserved is not None and length > upload.reserved:
            raise LinkLimitExceeded(f"Upload-Length {length} exceeds the {upload.reserved} bytes "
                                    "this upload holds of its link")
        upload.length = length
        await anyio.to_thread.run_sync(self.storage.save_partial_state, upload.upload_id, upload.state())

    async def _append(self, upload: TusUpload, body_scope: anyio.CancelScope,
                      body: RequestBody, checksum: tuple[str, bytes] | None,
                      request: RequestContext | None) -> None:
        writer = await self._open_session(upload.upload_id)
        settled = False  # the state was saved while the session was held
        try:
            marked = await self._cut_unverified(upload.upload_id, writer)
            if writer.offset != upload.offset:  # another worker process appended meanwhile
                raise OffsetMismatch(f"the upload now holds {writer.offset} bytes",
                                     headers={"upload-offset": str(writer.offset)})
            if checksum or marked:
                # Until this chunk is verified, the durable offset stays here: a crash from
                # now on leaves bytes the next writer cuts off (all-or-nothing, as the tus
                # checksum extension wants a chunk that cannot be verified discarded).
                upload.unverified_from = upload.offset if checksum else None
                await anyio.to_thread.run_sync(self.storage.save_partial_state, upload.upload_id,
                                               upload.state())
            # Partial uploads are hashed when concatenated, not here.
            upload_hash = await self.hashes.take(upload) if upload.concat is None else None
            before = upload_hash.copy() if upload_hash is not None and checksum else None
            chunk_hash = CHECKSUM_ALGORITHMS[checksum[0]]() if checksum else None
            room = (upload.length if upload.length is not None else self.settings.max_file_size) - upload.offset
            if upload.reserved is not None:  # a deferred length within its link's reservation
                room = min(room, upload.reserved - upload.offset)
            event = self.tracked.event_of(upload, request) if upload.concat is None else None
            check_type = None
            if not upload.type_checked and upload.concat is None:
                async def check_type(block: Block) -> None:
                    # The upload's first bytes, before any is kept: 415 refuses it here.
                    await self._check_type(upload, head_of(block), request)
            sink = BlobSink(writer, lane_threads=self.uploads.lane_threads, max_size=room,
                            block_size=self.settings.block_size,
                            on_block=functools.partial(self.uploads.events.received, event) if event else None,
                            on_first_block=check_type,
                            hashes=[h for h in (upload_hash, chunk_hash) if h is not None],
                            overflow=_past_upload_length)
            failure: BaseException | None = None
            try:
                read = body.read
                with body_scope:
                    while chunk := await read():
                        if sink.add(chunk):
                            await sink.flush()
            except BaseException as error:  # cancellation included: save first, re-raise after
                failure = error
            # Whatever happened to the body, what arrived is settled before anything else,
            # even when this task is being cancelled.
            with anyio.CancelScope(shield=True):
                await sink.drain()
                # A chunk whose checksum cannot be verified (cut short) or does not match is
                # discarded whole (tus checksum extension); so is one running past Upload-Length.
                keep = not isinstance(failure, UploadLengthExceeded)
                if chunk_hash is not None and keep:
                    assert checksum is not None
                    if failure is not None or body_scope.cancel_called:
                        keep = False
                    elif chunk_hash.digest() != checksum[1]:
                        keep = False
                        failure = ChecksumMismatch(f"the chunk's {checksum[0]} does not match Upload-Checksum; "
                                                   "it was discarded")
                if keep:
                    upload.offset = writer.offset + sink.size
                    if upload_hash is not None:
                        self.hashes.keep(upload, upload_hash)
                else:
                    await anyio.to_thread.run_sync(writer.rollback)
                    if before is not None:
                        self.hashes.keep(upload, before)
                if upload.unverified_from is not None:
                    # Cleared while the session is held: a writer in another process must
                    # never find a verified chunk still marked and cut it off.
                    await anyio.to_thread.run_sync(writer.sync)
                    crashpoints.reached("tus.chunk_appended")
                    await self._save_after_patch(upload)
                    settled = True
        except BaseException:
            self.hashes.forget(upload.upload_id)  # state unknown: rebuild from disk later
            upload.sha256_state, upload.sha256_offset = None, -1
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(writer.close)
        if not settled:
            crashpoints.reached("tus.chunk_appended")
            await self._save_after_patch(upload)
        if event is not None:
            self.uploads.events.settled(event, upload.offset)
        if failure is not None:
            raise failure

    async def _save_after_patch(self, upload: TusUpload) -> None:
        upload.unverified_from = None
        upload.expires_at = self.clock() + self.settings.tus_expiry
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.storage.save_partial_state, upload.upload_id,
                                           upload.state())
        crashpoints.reached("tus.state_written")

    async def _cut_unverified(self, upload_id: str, writer: PartialWriter) -> bool:
        """Holding the session, so the only writer: bytes past a recorded `unverified_from`
        were written by a PATCH that died before its checksum was verified. Cut them off;
        True when the state still carries the mark."""
        state, _ = await anyio.to_thread.run_sync(self.storage.partial_state, upload_id)
        unverified = state.get("unverified_from")
        if unverified is not None and writer.offset > unverified:
            log.info("upload %s: cut %d unverified bytes off", upload_id, writer.offset - unverified)
            await anyio.to_thread.run_sync(writer.truncate, unverified)
        return unverified is not None

    async def _open_session(self, upload_id: str) -> PartialWriter:
        """The storage's exclusive session. Held by another node: ask it to hand over (as a
        newer request does inside one process) and wait a bounded time for the release."""
        deadline = self.clock() + HANDOVER_WAIT_SECONDS
        asked = False
        while True:
            try:
                writer: PartialWriter = await anyio.to_thread.run_sync(self.storage.open_partial, upload_id)
                return writer
            except PartialBusy:
                if self.handover is None or self.clock() >= deadline:
                    raise UploadLocked("another server process is writing this upload; retry shortly",
                                       headers={"retry-after": "1"}) from None
            if not asked:
                await self.handover.request(upload_id)
                asked = True
            await anyio.sleep(0.1)

    async def _commit_if_whole(self, upload: TusUpload, request: RequestContext | None) -> None:
        """Commit an upload that holds all its bytes but is not stored yet: its last PATCH
        failed after the last byte (the client went away before the end of the request), a
        PATCH declared a length equal to the bytes held, or the process died in between.
        HEAD then answers offset == length and every tus client takes the upload as done,
        so it must be a stored file by the time HEAD says so. Partial uploads stay partial."""
        if upload.complete and upload.file_id is None and upload.concat is None:
            await self.commit(upload, request)

    async def commit(self, upload: TusUpload, request: RequestContext | None) -> None:
        """All bytes are in: make them an ordinary stored file through the upload service, or
        finish the commit a crash cut short. Holds the storage's session all along, so one
        process at a time commits an upload (two workers may HEAD it at once). `request` is
        the one that found the upload whole (None at start-up recovery)."""
        writer = await self._commit_session(upload.upload_id)
        try:
            state, _ = await anyio.to_thread.run_sync(self.storage.partial_state, upload.upload_id)
            if state.get("file_id") is not None:  # another process finished it meanwhile
                upload.file_id = state["file_id"]
                return
            if writer is None:
                raise NotFound(f"the bytes of upload {upload.upload_id} are gone")
            stored = await self.uploads.catalog.get(upload.upload_id)
            if stored is None:
                file_id = await self._store(upload, request)
            else:
                # A crash came after the row: the file is stored, only the state lags behind.
                file_id = stored.id
                self.uploads.events.finished(self.tracked.event_of(upload, request))
                log.info("upload %s: finished a commit cut after its catalog row", upload.upload_id)
            await self._mark_done(upload, file_id)
        finally:
            if writer is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(writer.close)

    async def _commit_session(self, upload_id: str) -> PartialWriter | None:
        """The storage's exclusive session for a commit, waiting (bounded) while another
        process holds it; None when the bytes are gone (the upload was finished meanwhile)."""
        deadline = self.clock() + HANDOVER_WAIT_SECONDS
        while True:
            try:
                writer: PartialWriter = await anyio.to_thread.run_sync(self.storage.open_partial, upload_id)
                return writer
            except KeyError:
                return None
            except PartialBusy:
                if self.clock() >= deadline:
                    raise UploadLocked("another server process is committing this upload; retry shortly",
                                       headers={"retry-after": "1"}) from None
            await anyio.sleep(0.05)

    async def _store(self, upload: TusUpload, request: RequestContext | None) -> str:
        """The commit proper. Its blob id is the upload id: a blob a crash left is adopted."""
        assert upload.length is not None
        upload_hash = await self.hashes.take(upload)
        filename, content_type = name_and_type(upload.metadata, f"upload-{upload.upload_id}")
        if not upload.type_checked:
            await self._check_type(upload, b"", request)  # an empty upload has no first bytes
        blob = await anyio.to_thread.run_sync(self.storage.finish_partial, upload.upload_id)
        incoming = IncomingFile(
            sink=BlobSink(blob, lane_threads=self.uploads.lane_threads, max_size=self.settings.max_file_size,
                          block_size=self.settings.block_size),
            filename=filename, content_type=content_type, metadata=extra_metadata(upload.metadata),
            received=Received(size=upload.length, sha256=upload_hash.hexdigest()),
            upload=self.tracked.event_of(upload, request), detected_type=upload.detected_type, type_checked=True,
            reservation=upload.upload_id if upload.link is not None else None)
        try:
            [stored] = await self.uploads.commit([incoming])
        except HookRejected:
            # pre-finish refused the upload: it is discarded, as its client is told.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.storage.terminate_partial, upload.upload_id)
                await self.release_link(upload.upload_id, upload.state())
            self.tracked.forget(upload.upload_id)
            self.hashes.forget(upload.upload_id)
            raise
        return stored.id

    async def _mark_done(self, upload: TusUpload, file_id: str) -> None:
        """The state names the stored file, then the partial bytes go (the blob has its own)."""
        self.tracked.forget(upload.upload_id)
        self.hashes.forget(upload.upload_id)
        upload.file_id = file_id
        upload.unverified_from = None
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.storage.save_partial_state, upload.upload_id,
                                           upload.state())
            crashpoints.reached("tus.state_done")
            await anyio.to_thread.run_sync(
                lambda: self.storage.terminate_partial(upload.upload_id, keep_state=True))

    # --- termination and expiry -------------------------------------------------------------

    async def terminate(self, upload_id: str, *, request: RequestContext | None) -> None:
        async with self.locks.hold(upload_id):
            try:
                state, offset = await anyio.to_thread.run_sync(self.storage.partial_state, upload_id)
            except KeyError:
                raise NotFound(f"no upload with id {upload_id!r}") from None
            _check_owner(state.get("link"), request)
            await anyio.to_thread.run_sync(self.storage.terminate_partial, upload_id)
            await self.release_link(upload_id, state)
            self.hashes.forget(upload_id)
            self.tracked.end(upload_id, "terminated", state=state, offset=offset, request=request)

    async def sweep(self) -> int:
        """Remove expired uploads (ingest/tus/expiry.py); how many."""
        return await sweep_expired(self)

    # --- link reservations ------------------------------------------------------------------

    async def release_link(self, upload_id: str, state: dict[str, Any]) -> None:
        """Give back what an unfinished upload held of its link (a stored one has no state
        left to release: the commit turned it into use)."""
        if state.get("link") is not None and state.get("file_id") is None:
            with anyio.CancelScope(shield=True):
                try:
                    await self.uploads.links.release(upload_id)
                except Exception:
                    log.exception("could not release a link reservation")

def _check_owner(link_id: str | None, request: RequestContext | None) -> None:
    """A request made with an upload link reaches only uploads made with that link."""
    link = request.link if request is not None else None
    if link is None or link.id == link_id:
        return
    if link.expired(utc_now()):
        raise LinkExpired(f"upload link {link.id} expired at {link.expires_at}")
    raise Forbidden("this upload was not made with this upload link")


def _past_upload_length(excess: int) -> IngestError:
    return UploadLengthExceeded(
        f"the body goes past the declared Upload-Length (or the size limit) by {excess} bytes")
