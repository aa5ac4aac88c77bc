"""multipart/form-data, streamed: request body -> framing guard -> streaming-form-data -> sinks.

One target is registered for every part name. The framing guard announces each part's
headers just before the parser is fed the segment that ends with them, so the target knows
which part the parser starts and can refuse when the two disagree.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget

from ingest.config import Settings
from ingest.digests import sha256_from_content_digest, sha256_from_field
from ingest.errors import (
    FieldTooLarge,
    IngestError,
    InvalidFilename,
    InvalidMetadata,
    MalformedMultipart,
    NoFiles,
)
from ingest.framing import MultipartFraming, PartHeaders, boundary_from_content_type
from ingest.models import clean_filename, clean_media_type
from ingest.uploads import IncomingFile, UploadService

DIGEST_FIELD_SUFFIX = ".sha256"
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

    def __init__(self, service: UploadService, settings: Settings) -> None:
        self._service = service
        self._max_field_size = settings.max_field_size
        self.files: list[IncomingFile] = []
        self.file_field_names: list[str] = []
        self.fields: list[tuple[str, str]] = []
        self.announced: PartHeaders | None = None
        self._current: IncomingFile | _TextField | _EmptyFileInput | None = None
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
            expected_sha256=expected)
        self.files.append(incoming)
        self.file_field_names.append(headers.name)
        self._current = incoming

    async def data(self, chunk: bytes) -> None:
        if not chunk:
            return  # the async parser reports empty slices too
        current = self._current
        if isinstance(current, IncomingFile):
            await current.sink.write(chunk)
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
    ignored (they are wrong for some parts), the framing guard's headers are used instead."""

    def __init__(self, receiver: _FormReceiver) -> None:
        super().__init__()
        self._receiver = receiver

    async def on_start_async(self) -> None:
        await self._receiver.start()

    async def on_data_received_async(self, chunk: bytes) -> None:
        await self._receiver.data(chunk)

    async def on_finish_async(self) -> None:
        await self._receiver.finish()


async def receive_form(content_type: str, body: AsyncIterator[bytes], service: UploadService,
                       settings: Settings) -> Form:
    """Stream a multipart body into sinks. On any failure every temp file is discarded."""
    boundary = boundary_from_content_type(content_type)
    framing = MultipartFraming(boundary, max_header_size=settings.max_part_header_size,
                               max_parts=settings.max_parts)
    receiver = _FormReceiver(service, settings)
    parser = StreamingFormDataParser(
        headers={"Content-Type": "multipart/form-data; boundary=" + boundary.decode()})
    parser.register("", _EveryPart(receiver), matches=lambda _registered, _actual: True)
    try:
        async for chunk in body:
            if framing.complete:
                continue  # the epilogue: read (so the connection stays usable) and dropped
            for segment in framing.feed(chunk):
                receiver.announced = segment.headers
                await _feed(parser, segment.data)
                if receiver.announced is not None:
                    raise MalformedMultipart("a part's headers were not recognised")
        if not framing.complete:
            raise MalformedMultipart("body ended before the closing boundary")
        if receiver.open_parts:
            raise MalformedMultipart("a part was not closed by its boundary")
        return _assemble(receiver)
    except BaseException:
        await service.discard(receiver.files)
        raise


async def _feed(parser: StreamingFormDataParser, data: bytes) -> None:
    try:
        await parser.adata_received(data)
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
