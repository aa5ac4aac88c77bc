"""The one event model of every upload path: lifecycle calls -> metrics + hooks.

Hook names follow tusd's (https://tus.github.io/tusd/advanced-topics/hooks/):

| event | when | blocking |
|---|---|---|
| pre-create | before the first byte is stored; may reject (status, message) or change metadata | yes |
| post-create | the upload was accepted and is receiving bytes | no |
| post-receive | progress, at most every `hook_progress_interval` seconds per upload | no |
| pre-finish | every byte is in and hashed, nothing is visible yet; may reject (upload discarded) | yes |
| post-finish | the file is stored and visible | no |
| post-terminate | the upload ended without being stored (`error` says why), or a stored file was deleted | no |

A protocol drives one `Upload` through an `EventHub` (`UploadService.events`), in this order.
Multipart and raw bodies get it from `UploadService.new_file/finish/commit/discard`; tus
(`ingest/tus/service.py`) calls `create`, `counting` and `settled` itself and hands its
`Upload` to `UploadService.commit` on an `IncomingFile`, which fires the finish events::

    upload = Upload(id=upload_id, protocol="tus", filename=..., content_type=...,
                    client=..., expected_size=...)
    await hub.create(upload)            # pre-create (may raise HookRejected), post-create
    hub.received(upload, len(block))    # per block (the sink's on_block); metrics and post-receive
    hub.settled(upload, offset)         # a resumable upload dropped bytes it had counted
    upload.size, upload.sha256 = ...    # once every byte is in
    await hub.finishing(upload)         # pre-finish (may raise HookRejected)
    hub.finished(upload)                # after the commit: post-finish
    hub.failed(upload, error)           # instead, on any failure: post-terminate

Blocking hooks run with a timeout (`hook_timeout`); a target that fails or times out rejects
the upload with 503 `hook_unavailable`, unless `hook_fail_open` is set, in which case the
upload goes on. Non-blocking hooks go through a bounded queue served by background tasks with
retries and exponential backoff; when the queue is full the event is dropped and counted, so
a slow or dead receiver never blocks or fails an upload.
"""

from __future__ import annotations

import logging
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from prometheus_client import Counter

# Re-exported: Python hooks raise `ingest.observe.events.HookRejected` (ingest/observe/hooks.py).
from ingest.errors import HookRejected as HookRejected
from ingest.errors import HookUnavailable as HookUnavailable
from ingest.errors import IngestError
from ingest.observe.metrics import Metrics

log = logging.getLogger("ingest.events")

PRE_CREATE = "pre-create"
POST_CREATE = "post-create"
POST_RECEIVE = "post-receive"
PRE_FINISH = "pre-finish"
POST_FINISH = "post-finish"
POST_TERMINATE = "post-terminate"
EVENTS = (PRE_CREATE, POST_CREATE, POST_RECEIVE, PRE_FINISH, POST_FINISH, POST_TERMINATE)

DELIVERY_TASKS = 4  # post-* deliveries in flight at once


@dataclass
class Upload:
    """One file on its way in, as hooks see it (`payload`) and as the hub tracks it."""

    id: str
    protocol: str
    filename: str
    content_type: str
    client: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    expected_size: int | None = None
    size: int = 0
    sha256: str | None = None
    detected_type: str | None = None  # from the first bytes (ingest/content_rules.py)
    # Who sends it: an upload link's id or a bearer token's name (never its secret).
    link: str | None = None
    token: str | None = None
    error: str | None = None
    request_id: str | None = None
    # Request headers sent on to webhooks as HTTP headers (`hook_forward_headers`).
    forwarded_headers: dict[str, str] = field(default_factory=dict)
    # Metadata a pre-create hook asked for; merged over whatever metadata arrives later.
    metadata_changes: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    ended: bool = False
    counted: bool = False  # whether metrics counted its start
    sequence: int = 0      # events of this upload so far: receivers can restore their order
    _held: int = 0
    _next_progress: float = 0.0

    def payload(self) -> dict[str, Any]:
        """The JSON every hook receives; each call numbers one more event of the upload."""
        self.sequence += 1
        return {"id": self.id, "sequence": self.sequence, "filename": self.filename, "size": self.size,
                "expected_size": self.expected_size, "sha256": self.sha256,
                "content_type": self.content_type, "detected_type": self.detected_type,
                "link": self.link, "token": self.token, "metadata": self.metadata,
                "client": self.client, "protocol": self.protocol, "request_id": self.request_id,
                "error": self.error}


@dataclass(frozen=True)
class HookEvent:
    type: str
    upload: dict[str, Any]
    forwarded_headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "upload": self.upload}


@dataclass(frozen=True)
class HookResponse:
    """What a pre-* hook may answer: a refusal, or metadata to merge (pre-create only)."""

    reject: bool = False
    status: int = 403
    message: str = "rejected by a hook"
    metadata: dict[str, Any] | None = None


class HookTarget(Protocol):
    """Somewhere events are delivered: a webhook, a Python callable. Raises on failure."""

    name: str
    events: frozenset[str]

    async def deliver(self, event: HookEvent) -> HookResponse | None: ...


@dataclass(frozen=True, kw_only=True)
class DeliveryPolicy:
    timeout: float = 5.0          # seconds for one attempt (and for a whole blocking hook)
    retries: int = 3              # extra attempts for post-* events
    backoff: float = 0.5          # seconds before the first retry, doubling after each
    queue_size: int = 1000        # post-* events waiting; beyond that they are dropped
    fail_open: bool = False       # outcome of a pre-* hook that fails or times out
    progress_interval: float = 1.0  # seconds between post-receive events of one upload


class EventHub:
    def __init__(self, metrics: Metrics, targets: Sequence[HookTarget] = (),
                 policy: DeliveryPolicy | None = None) -> None:
        self.metrics = metrics
        self.targets = list(targets)
        self.policy = policy or DeliveryPolicy()
        self._bytes_by_protocol: dict[str, Counter] = {}
        # The post-* queues exist once an event is queued or delivery starts: see `_queue`.
        self._queues: list[tuple[MemoryObjectSendStream[tuple[HookTarget, HookEvent]],
                                 MemoryObjectReceiveStream[tuple[HookTarget, HookEvent]]]] = []

    # --- the lifecycle ------------------------------------------------------------------

    async def create(self, upload: Upload) -> None:
        """Count the upload and run pre-create; a refusal ends it (post-terminate) and raises."""
        upload.counted = True
        self.metrics.started.labels(upload.protocol).inc()
        self.metrics.in_progress.labels(upload.protocol).inc()
        try:
            answer = await self._blocking(PRE_CREATE, upload)
        except IngestError as error:
            self.failed(upload, error)
            raise
        if answer is not None and answer.metadata:
            upload.metadata_changes.update(answer.metadata)
            upload.metadata = {**upload.metadata, **answer.metadata}
        upload._next_progress = time.monotonic() + self.policy.progress_interval
        self._notify(POST_CREATE, upload)

    def received(self, upload: Upload, nbytes: int) -> None:
        """Bytes of the upload reached temporary storage. Called per block: keep it cheap."""
        upload.size += nbytes
        upload._held += nbytes
        counter = self._bytes_by_protocol.get(upload.protocol)
        if counter is None:  # `labels()` costs a lookup under a lock: once per protocol
            counter = self._bytes_by_protocol[upload.protocol] = self.metrics.bytes_received.labels(upload.protocol)
        counter.inc(nbytes)
        self.metrics.temp_bytes.inc(nbytes)
        now = time.monotonic()
        if now >= upload._next_progress:
            upload._next_progress = now + self.policy.progress_interval
            self._notify(POST_RECEIVE, upload)

    def settled(self, upload: Upload, size: int) -> None:
        """The upload holds exactly `size` bytes (a resumable upload dropped a rejected chunk)."""
        self.metrics.temp_bytes.inc(size - upload._held)
        upload.size = upload._held = size

    async def finishing(self, upload: Upload) -> None:
        """pre-finish: every byte is in and hashed, nothing visible yet. May raise HookRejected."""
        await self._blocking(PRE_FINISH, upload)

    def finished(self, upload: Upload) -> None:
        if upload.ended:
            return
        upload.ended = True
        self._release(upload)
        self.metrics.finished.labels(upload.protocol).inc()
        self.metrics.size.labels(upload.protocol).observe(upload.size)
        self.metrics.duration.labels(upload.protocol).observe(time.monotonic() - upload.started)
        self._notify(POST_FINISH, upload)

    def failed(self, upload: Upload, error: BaseException | str | None = None) -> None:
        """The upload ended without being stored. Without `error`, the one being handled."""
        if upload.ended:
            return
        upload.ended = True
        upload.error = error if isinstance(error, str) else error_code(error or sys.exception())
        self._release(upload)
        self.metrics.failed.labels(upload.protocol, upload.error).inc()
        self._notify(POST_TERMINATE, upload)

    def deleted(self, upload: Upload) -> None:
        """A stored file was deleted: post-terminate with error `deleted`."""
        upload.error = "deleted"
        self._notify(POST_TERMINATE, upload)

    def digest_mismatch(self, protocol: str) -> None:
        self.metrics.digest_mismatches.labels(protocol).inc()

    def _release(self, upload: Upload) -> None:
        if upload.counted:
            self.metrics.in_progress.labels(upload.protocol).dec()
        self.metrics.temp_bytes.dec(upload._held)
        upload._held = 0

    # --- delivery -----------------------------------------------------------------------

    async def _blocking(self, event_type: str, upload: Upload) -> HookResponse | None:
        """Ask every target subscribed to a pre-* event, in turn, within `timeout` each."""
        changes: dict[str, Any] = {}
        event: HookEvent | None = None
        for target in self.targets:
            if event_type not in target.events:
                continue
            event = event or HookEvent(event_type, upload.payload(), upload.forwarded_headers)
            try:
                with anyio.fail_after(self.policy.timeout):
                    answer = await target.deliver(event)
            except HookRejected:
                self._count(event_type, target, "delivered")
                raise
            except Exception as error:
                self._count(event_type, target, "failed")
                log.warning("%s hook %s failed: %s", event_type, target.name, _describe(error))
                if self.policy.fail_open:
                    continue
                raise HookUnavailable(f"the {event_type} hook could not be reached; try again later") from None
            self._count(event_type, target, "delivered")
            if answer is None:
                continue
            if answer.reject:
                raise HookRejected(answer.message, status=answer.status)
            if answer.metadata and event_type == PRE_CREATE:
                changes.update(answer.metadata)
        return HookResponse(metadata=changes) if changes else None

    def _notify(self, event_type: str, upload: Upload) -> None:
        """Queue a post-* event for each subscribed target; never waits."""
        event: HookEvent | None = None
        for target in self.targets:
            if event_type not in target.events:
                continue
            event = event or HookEvent(event_type, upload.payload(), upload.forwarded_headers)
            try:
                self._queue(upload.id).send_nowait((target, event))
            except anyio.WouldBlock:
                self._count(event_type, target, "dropped")
                log.warning("hook queue full: %s event of %s for %s dropped", event_type, upload.id, target.name)

    def _queue(self, upload_id: str) -> MemoryObjectSendStream[tuple[HookTarget, HookEvent]]:
        """The queue serving this upload: one per delivery task, chosen by upload id, so the
        post-* events of one upload go out in order while different uploads go in parallel."""
        if not self._queues:
            size = max(1, self.policy.queue_size // DELIVERY_TASKS)
            self._queues = [anyio.create_memory_object_stream[tuple[HookTarget, HookEvent]](max_buffer_size=size)
                            for _ in range(DELIVERY_TASKS)]
        return self._queues[zlib.crc32(upload_id.encode()) % DELIVERY_TASKS][0]

    async def deliver_forever(self) -> None:
        """Serve the post-* queues; run it in the app's task group, call `close` after."""
        if not self.targets:
            return
        self._queue("")
        async with anyio.create_task_group() as workers:
            for _, receive in self._queues:
                workers.start_soon(self._deliver_queued, receive)

    async def _deliver_queued(self, receive: MemoryObjectReceiveStream[tuple[HookTarget, HookEvent]]) -> None:
        async for target, event in receive:
            await self._deliver_with_retries(target, event)

    async def _deliver_with_retries(self, target: HookTarget, event: HookEvent) -> None:
        delay = self.policy.backoff
        for attempt in range(self.policy.retries + 1):
            try:
                with anyio.fail_after(self.policy.timeout):
                    await target.deliver(event)
            except Exception as error:
                if attempt == self.policy.retries:
                    self._count(event.type, target, "failed")
                    log.warning("%s hook %s failed after %d attempts: %s", event.type, target.name,
                                attempt + 1, _describe(error))
                    return
                self.metrics.hook_retries.labels(event.type, target.name).inc()
                await anyio.sleep(delay)
                delay = min(delay * 2, 60.0)
            else:
                self._count(event.type, target, "delivered")
                return

    def close(self) -> None:
        for send, receive in self._queues:
            send.close()
            receive.close()

    def pending(self) -> int:
        return sum(send.statistics().current_buffer_used for send, _ in self._queues)

    async def drain(self, grace: float) -> None:
        """At shutdown: give queued events up to `grace` seconds to go out."""
        with anyio.move_on_after(grace):
            while self.pending():
                await anyio.sleep(0.05)

    def _count(self, event_type: str, target: HookTarget, outcome: str) -> None:
        self.metrics.hook_deliveries.labels(event_type, target.name, outcome).inc()


def error_code(error: BaseException | None) -> str:
    """The error code an ended upload is labelled with."""
    if isinstance(error, IngestError):
        return error.code
    if error is None or isinstance(error, anyio.get_cancelled_exc_class()):
        return "client_disconnected"
    return "internal_error"


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__
