"""multipart/form-data, streamed: request body -> framing guard -> streaming-form-data -> sinks.

One target is registered for every part name. The framing guard announces each part's
headers just before the parser is fed the segment that ends with them, so the target knows
which part the parser starts and can refuse when the two disagree.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio.lowlevel

from ingest.config import Settings
from ingest.edge.body import RequestBody
from ingest.edge.digests import sha256_from_content_digest, sha256_from_field
from ingest.errors import (
    FieldTooLarge,
    IngestError,
    InvalidFilename,
    InvalidMetadata,
    MalformedMultipart,
    NoFiles,
    ParseBudgetExceeded,
)
from ingest.models import clean_filename, clean_media_type
from ingest.multipart.formparser import (
    BaseTarget,
    ParseFailedException,
    StreamingFormDataParser,
    parse_content_boundary,
)
from ingest.multipart.framing import MultipartFraming, PartHeaders, boundary_from_content_type
from ingest.observe.context import RequestContext
from ingest.sink import BlobSink
from ingest.uploads import IncomingFile, UploadService

DIGEST_FIELD_SUFFIX = ".sha256"
YIELD_AFTER_SECONDS = 0.001  # CPU time of one chunk's parsing beyond which the loop is yielded
METADATA_FIELD = "metadata"


@dataclass
class Form:
    """A fully received form: its files (finished, not committed) and its text fields."""

    files: list[IncomingFile] = field(default_factory=list)
    fields: dict[str, str | list[str]] = field(default_factory=dict)


@dataclass
class _TextField:
    name: str
    value: bytearray = field(default_factory=bytearray)


class _EmptyFileInput:
    """A browser's file input left empty: `filename=""` and no bytes. Nothing is kept."""


class _FormReceiver:
    """Turns the parser's start/data/finish calls into files and fields."""

    def __init__(self, service: UploadService, settings: Settings, request: RequestContext | None) -> None:
        self._service = service
        self._request = request
        self._max_field_size = settings.max_field_size
        self.files: list[IncomingFile] = []
        self.file_field_names: list[str] = []
        self.fields: list[tuple[str, str]] = []
        self.announced: PartHeaders | None = None
        self._current: IncomingFile | _TextField | _EmptyFileInput | None = None
        self.current_sink: BlobSink | None = None  # the sink of the file part being received
        self.open_parts = 0

    async def start(self) -> None:
        headers, self.announced = self.announced, None
        if headers is None or self._current is not None:
            raise MalformedMultipart("part boundaries are inconsistent")
        self.open_parts += 1
        if headers.filename is None:
            self._current = _TextField(headers.name)
            return
        if headers.filename == "":
            self._current = _EmptyFileInput()
            return
        filename = clean_filename(headers.filename)
        expected = (sha256_from_content_digest(headers.content_digest)
                    if headers.content_digest else None)
        incoming = await self._service.new_file(
            filename=filename, content_type=clean_media_type(headers.content_type, filename),
            request=self._request, expected_sha256=expected)
        self.files.append(incoming)
        self.file_field_names.append(headers.name)
        self._current = incoming
        self.current_sink = incoming.sink

    async def data(self, chunk: bytes) -> None:
        if not chunk:
            return  # the async parser reports empty slices too
        current = self._current
        if isinstance(current, IncomingFile):
            if current.sink.add(chunk):
                await current.sink.flush()
        elif isinstance(current, _TextField):
            if len(current.value) + len(chunk) > self._max_field_size:
                raise FieldTooLarge(
                    f"field {current.name!r} is larger than {self._max_field_size} bytes")
            current.value += chunk
        elif isinstance(current, _EmptyFileInput):
            raise InvalidFilename("a file part with data has an empty filename")
        else:
            raise MalformedMultipart("part data outside of a part")

    async def finish(self) -> None:
        current, self._current = self._current, None
        self.current_sink = None
        self.open_parts -= 1
        if isinstance(current, IncomingFile):
            await self._service.finish(current)
        elif isinstance(current, _TextField):
            try:
                self.fields.append((current.name, current.value.decode("utf-8")))
            except UnicodeDecodeError:
                raise MalformedMultipart(f"field {current.name!r} is not valid UTF-8") from None


class _EveryPart(BaseTarget):  # type: ignore[misc]
    """The single streaming-form-data target; the parser's own filename and content type are
    ignored (they are wrong for some parts), the framing guard's headers are used instead.

    The parser is driven synchronously and the target only queues what it is told; the
    queue is replayed (asynchronously: sinks await their lanes) after each parser call. So
    the time the parser itself spends is measured exactly, with no other task's work in it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.events: list[bytes | bool | None] = []  # True: start, bytes: data, None: finish
        self.body_bytes = 0  # part body bytes the parser has handed out, all parts

    def on_start(self) -> None:
        self.events.append(True)

    def on_data_received(self, chunk: bytes) -> None:
        if chunk:  # the parser reports empty slices too
            self.events.append(chunk)
            self.body_bytes += len(chunk)

    def on_finish(self) -> None:
        self.events.append(None)


async def _replay(target: _EveryPart, receiver: _FormReceiver) -> None:
    events, target.events = target.events, []
    for event in events:
        if event is True:
            await receiver.start()
        elif event is None:
            await receiver.finish()
        else:
            assert isinstance(event, bytes)
            await receiver.data(event)


class _CollectorClock:
    """CPU time the garbage collector has spent in each thread, while a parse is running.

    A collection runs inside whatever allocation triggers it, so a full one (which takes
    hundreds of ms in a process holding many objects) can land inside a tiny parse; its time
    is not the request's doing and is left out of the parse budget. The clock is a
    `gc.callbacks` entry only while at least one parse holds it (`with _COLLECTOR_CLOCK:`),
    so importing ingest changes nothing in the collector and an idle server pays nothing.
    """

    def __init__(self) -> None:
        self._spent: dict[int, float] = {}
        self._started: dict[int, float] = {}
        self._holders = 0
        self._lock = threading.Lock()  # event loops may run in several threads

    def __enter__(self) -> None:
        with self._lock:
            self._holders += 1
            if self._holders == 1:
                gc.callbacks.append(self)

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                gc.callbacks.remove(self)
                self._started.clear()

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        thread = threading.get_ident()
        if phase == "start":
            self._started[thread] = time.thread_time()
        elif thread in self._started:
            self._spent[thread] = (self._spent.get(thread, 0.0)
                                   + time.thread_time() - self._started.pop(thread))

    def spent(self) -> float:
        """Collector CPU seconds in the calling thread so far (while the clock was held)."""
        return self._spent.get(threading.get_ident(), 0.0)


_COLLECTOR_CLOCK = _CollectorClock()


def _parse_cpu_time() -> float:
    """This thread's CPU seconds, less those the garbage collector took (with the
    collector clock held)."""
    return time.thread_time() - _COLLECTOR_CLOCK.spent()


class ParseBudget:
    """Bounds the CPU one request's multipart parsing may use.

    streaming-form-data 2.1.0 parses ordinary data at over 1 GB/s but falls to about 20 MB/s
    on data dense in CR, CRLF or boundary-prefix bytes (measured: README, "Hostile input").
    A request may use `grace` CPU-seconds, then must keep its average at or above
    `min_rate` bytes per CPU-second, or it is refused. Thread CPU time is used, not wall
    time, so a busy machine never makes an honest upload look slow; garbage collection that
    happens to run during a parse is not counted either.
    """

    def __init__(self, *, min_rate: int, grace_seconds: float) -> None:
        self._min_rate = min_rate
        self._grace_seconds = grace_seconds
        self.cpu_seconds = 0.0
        self.bytes_parsed = 0

    def charge(self, cpu_seconds: float, size: int) -> None:
        self.cpu_seconds += cpu_seconds
        self.bytes_parsed += size
        if self._min_rate and self.cpu_seconds > self._grace_seconds + self.bytes_parsed / self._min_rate:
            raise ParseBudgetExceeded(
                f"this multipart body costs too much to parse (more than {self.cpu_seconds:.1f} "
                f"CPU-seconds for {self.bytes_parsed} bytes); send the file as a raw body "
                "(PUT /uploads/<name>) instead")


async def receive_form(content_type: str, body: RequestBody, service: UploadService,
                       settings: Settings, *, request: RequestContext | None) -> Form:
    """Stream a multipart body into sinks. On any failure every temp file is discarded.
    `request` is the context the files are received in (ingest/observe/context.py).

    Almost every chunk takes the fast path: once the parser has handed out every body byte
    it was given (it holds nothing back), a chunk the framing guard finds to be wholly inside
    the current part's body goes straight to that part's sink, by reference. The parser's
    state after such bytes is the one it had before them (reading a body, no partial
    delimiter, nothing buffered), so it is only fed the chunks that hold structure: delimiters,
    header blocks, and the bytes around them. Those take the guarded path below, under the
    parse budget.
    """
    boundary = boundary_from_content_type(content_type)
    framing = MultipartFraming(boundary, max_header_size=settings.max_part_header_size,
                               max_parts=settings.max_parts)
    receiver = _FormReceiver(service, settings, request)
    target = _EveryPart()
    budget = ParseBudget(min_rate=settings.multipart_min_parse_rate,
                         grace_seconds=settings.multipart_parse_grace_ms / 1000)
    parser = _parser_for(boundary)
    parser.register("", target, matches=lambda _registered, _actual: True)
    in_step = False  # the parser holds none of the body bytes it was given
    unparsed = 0  # bytes that took the fast path since the last parsed chunk
    read = body.read
    with _COLLECTOR_CLOCK:  # garbage collection during the parse is not charged to it
        try:
            while chunk := await read():
                if in_step and framing.passthrough(chunk):
                    unparsed += len(chunk)
                    sink = receiver.current_sink
                    if sink is None:
                        await receiver.data(chunk)  # a text field: bounded by max_field_size
                    elif sink.add(chunk):
                        await sink.flush()
                    continue
                if framing.complete:
                    continue  # the epilogue: read (so the connection stays usable) and dropped
                segments = framing.feed(chunk)
                spent = 0.0  # CPU time of framing and parsing only; the awaits below are not ours
                while True:
                    started = _parse_cpu_time()
                    segment = next(segments, None)
                    if segment is not None:
                        receiver.announced = segment.headers
                        _feed(parser, segment.data)
                    spent += _parse_cpu_time() - started
                    if segment is None:
                        break
                    await _replay(target, receiver)
                    if receiver.announced is not None:
                        raise MalformedMultipart("a part's headers were not recognised")
                # Bytes of the fast path count toward the rate at no CPU: two searches at C speed.
                budget.charge(spent, len(chunk) + unparsed)
                unparsed = 0
                in_step = target.body_bytes == framing.body_bytes
                if spent > YIELD_AFTER_SECONDS:
                    # A costly chunk: let other requests run before the next one is parsed.
                    await anyio.lowlevel.checkpoint()
            if not framing.complete:
                raise MalformedMultipart("body ended before the closing boundary")
            if receiver.open_parts:
                raise MalformedMultipart("a part was not closed by its boundary")
            return _assemble(receiver)
        except BaseException:
            await service.discard(receiver.files)
            raise


def _parser_for(boundary: bytes) -> StreamingFormDataParser:
    """A parser for `boundary`, quoted: RFC 2046 boundaries may hold spaces and characters
    that end a bare token. The parser reads the boundary back through the email package,
    which could decode it (RFC 2047 `=?...?=` words); any disagreement is refused."""
    content_type = {"Content-Type": f'multipart/form-data; boundary="{boundary.decode()}"'}
    try:
        understood = parse_content_boundary(content_type)
    except ParseFailedException:
        understood = b""
    if understood != boundary:
        raise MalformedMultipart("this multipart boundary is not supported; use letters and digits")
    return StreamingFormDataParser(headers=content_type)


def _feed(parser: StreamingFormDataParser, data: bytes) -> None:
    try:
        parser.data_received(data)
    except IngestError:
        raise
    except (ParseFailedException, UnicodeError, ValueError, LookupError) as error:
        raise MalformedMultipart(f"multipart body could not be parsed: {error}") from error


def _assemble(receiver: _FormReceiver) -> Form:
    """Attach `<name>.sha256` digests and `metadata` to the files; collect the fields."""
    form = Form(files=receiver.files)
    digests: dict[str, list[str]] = {}
    metadata: dict[str, Any] = {}
    for name, value in receiver.fields:
        if name.endswith(DIGEST_FIELD_SUFFIX):
            digests.setdefault(name[: -len(DIGEST_FIELD_SUFFIX)], []).append(sha256_from_field(value))
        elif name == METADATA_FIELD:
            metadata = _parse_metadata(value)
        existing = form.fields.get(name)
        if existing is None:
            form.fields[name] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            form.fields[name] = [existing, value]
    if not form.files:
        raise NoFiles("the form has no file parts (a file part has a filename)")
    for field_name, incoming in zip(receiver.file_field_names, form.files, strict=True):
        supplied = digests.get(field_name)
        if supplied:
            digest = supplied.pop(0)
            if incoming.expected_sha256 and incoming.expected_sha256 != digest:
                raise MalformedMultipart(f"{incoming.filename}: two different digests supplied")
            incoming.expected_sha256 = digest
        incoming.metadata = metadata
    return form


def _parse_metadata(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError:
        raise InvalidMetadata("the metadata field is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidMetadata("the metadata field must be a JSON object")
    return parsed
