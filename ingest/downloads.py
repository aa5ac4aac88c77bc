"""Serving stored files, from local disk or from an object store.

Local disk: Starlette's FileResponse plus what it leaves out.

FileResponse does Range, If-Range, 206 and multipart/byteranges: under uvicorn it reads the
file in READ_SIZE chunks (Starlette's 64 KiB default cost one thread hop per 64 KiB); servers
that advertise the ASGI `http.response.pathsend` extension (granian) get the path and send the
file themselves. Behind nginx, `accel_redirect_prefix` makes the answer an empty 200 with
`X-Accel-Redirect` to an `internal` location on the files directory, and nginx sends the bytes
(sendfile) and the 206 ranges; every check before that stays here. Added
here: a strong ETag from the stored SHA-256, If-None-Match / If-Modified-Since -> 304
(RFC 9110 §13.1), a Content-Disposition with an ASCII fallback beside `filename*`
(RFC 6266 §4.3), headers that stop browsers from running uploaded content, and JSON bodies
for its plain-text 400/416 answers.

An object store: streamed through ingest, or a presigned redirect.
The same headers as local downloads: strong ETag = SHA-256, 304 on
If-None-Match / If-Modified-Since, safe Content-Disposition, nosniff and sandbox. Ranges are
evaluated by the store itself (S3 GetObject `Range`), so ingest parses none: one
`bytes=` range is forwarded; several ranges are not supported by S3 and the whole file is
sent instead, which RFC 9110 §14.2 allows (a server may ignore Range). If-Range is checked
here against the ETag or Last-Modified (RFC 9110 §13.1.5) before forwarding.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
from starlette.datastructures import Headers
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from ingest.config import Settings
from ingest.edge.errors import error_response
from ingest.errors import InvalidRange, NotFound, RangeNotSatisfiable
from ingest.models import StoredFile
from ingest.storage.base import BlobStream, LocalFiles, Storage, StreamedBlobs

READ_SIZE = 1024 * 1024  # bytes per read (and thread hop) when ingest sends the file itself

# Uploaded bytes are someone else's content: never let a browser sniff or run them here.
SAFETY_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "sandbox; default-src 'none'",
    "cache-control": "private, max-age=0, must-revalidate",
}


async def stored_file_response(stored: StoredFile, storage: Storage, settings: Settings,
                               request_headers: Headers, *, method: str) -> Response:
    """The answer to GET/HEAD of a stored file's bytes, from whichever storage holds them."""
    try:
        if isinstance(storage, StreamedBlobs):
            return await object_response(stored, storage, request_headers, method=method,
                                         presign_seconds=settings.s3_presign_seconds)
        if not isinstance(storage, LocalFiles):
            raise NotFound("this storage backend cannot serve files directly")
        path = storage.path_of(stored.id)
        prefix = settings.accel_redirect_prefix
        # nginx's internal location mirrors the files directory: the same relative path below it.
        accel_redirect = (prefix.rstrip("/") + "/" + path.relative_to(settings.files_dir).as_posix()
                          if prefix else None)
        return file_response(stored, path, request_headers, method=method, accel_redirect=accel_redirect)
    except FileNotFoundError:
        raise NotFound(f"the bytes of {stored.id} are missing from storage") from None


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """`attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266 §4.3).

    The stored name has no control characters (models.clean_filename), and both forms are
    quoted/encoded here, so a name can never end the header or add another one.
    """
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%' else "_" for ch in filename)
    encoded = quote(filename, safe="")
    if encoded == filename:
        return f'{disposition}; filename="{filename}"'
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def entity_tag(stored: StoredFile) -> str:
    return f'"{stored.sha256}"'


def not_modified(request_headers: Headers, etag: str, mtime: float) -> bool:
    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        # Weak comparison (RFC 9110 §13.1.2): W/ prefixes do not matter here.
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request_headers.get("if-modified-since")
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError):
            return False  # an invalid date is ignored (RFC 9110 §13.1.3)
        return int(mtime) <= since
    return False


def file_response(stored: StoredFile, path: os.PathLike[str], request_headers: Headers,
                  *, method: str, accel_redirect: str | None = None) -> Response:
    """The stored file's answer; with `accel_redirect` (a URL path of nginx's internal location
    for this file) nginx sends the bytes, after every check here has passed."""
    stat_result = os.stat(path)
    etag = entity_tag(stored)
    headers = {"etag": etag, "content-disposition": content_disposition(stored.filename),
               **SAFETY_HEADERS}
    if method in ("GET", "HEAD") and not_modified(request_headers, etag, stat_result.st_mtime):
        headers["last-modified"] = formatdate(stat_result.st_mtime, usegmt=True)
        del headers["content-disposition"]
        return Response(status_code=304, headers=headers)
    if accel_redirect is not None:
        return _AccelRedirectResponse(path, accel_redirect, media_type=stored.content_type, headers=headers,
                                      stat_result=stat_result)
    return _JsonErrorsFileResponse(path, media_type=stored.content_type, headers=headers,
                                   stat_result=stat_result)


class _JsonErrorsFileResponse(FileResponse):
    """FileResponse whose own 400 (bad Range) and 416 answers carry our JSON error body."""

    chunk_size = READ_SIZE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rewritten: dict[str, object] = {}

        async def send_json_errors(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (400, 416):
                error = (RangeNotSatisfiable("the Range lies outside the file") if message["status"] == 416
                         else InvalidRange("malformed Range header"))
                answer = error_response(error)
                rewritten["body"] = answer.body
                headers = [(k, v) for k, v in message["headers"]
                           if k.lower() not in (b"content-type", b"content-length")]
                message = {**message, "headers": headers + answer.raw_headers}
            elif message["type"] == "http.response.body" and "body" in rewritten:
                message = {"type": "http.response.body", "body": rewritten.pop("body")}
            await send(message)

        await super().__call__(scope, receive, send_json_errors)


class _AccelRedirectResponse(_JsonErrorsFileResponse):
    """FileResponse that, where it would send the file or its ranges, answers an empty 200
    with `X-Accel-Redirect` instead; nginx then serves the same request (Range, If-Range and
    HEAD included) from its internal location. Range parsing, 400 and 416 stay FileResponse's,
    so a bad or unsatisfiable Range gets the same JSON answer as without nginx.

    nginx keeps Content-Type, Content-Disposition and Cache-Control of this answer and drops
    the others; deploy/nginx/ingest.conf's internal location adds ETag, nosniff and the CSP
    back from `$upstream_http_*` (ngx_http_upstream.c copies only headers marked `redirect`).
    The three `_handle_*` methods are where Starlette 1.x's FileResponse sends the body
    (tests/test_downloads.py fails if a release moves them).
    """

    def __init__(self, path: os.PathLike[str], location: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.location = quote(location, safe="/")

    async def _redirect(self, send: Send) -> None:
        headers = [(name, value) for name, value in self.raw_headers if name != b"content-length"]
        headers += [(b"content-length", b"0"), (b"x-accel-redirect", self.location.encode("ascii"))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _handle_simple(self, send: Send, send_header_only: bool, send_pathsend: bool) -> None:
        await self._redirect(send)

    async def _handle_single_range(self, send: Send, start: int, end: int, file_size: int,
                                   send_header_only: bool) -> None:
        await self._redirect(send)

    async def _handle_multiple_ranges(self, send: Send, ranges: list[tuple[int, int]], file_size: int,
                                      send_header_only: bool) -> None:
        await self._redirect(send)


# --- an object store --------------------------------------------------------------------

async def object_response(stored: StoredFile, storage: StreamedBlobs, request_headers: Headers,
                          *, method: str, presign_seconds: int) -> Response:
    etag = entity_tag(stored)
    mtime = datetime.fromisoformat(stored.created_at).timestamp()
    last_modified = formatdate(mtime, usegmt=True)
    headers = {"etag": etag, "last-modified": last_modified, "accept-ranges": "bytes",
               "content-disposition": content_disposition(stored.filename), **SAFETY_HEADERS}
    if not_modified(request_headers, etag, mtime):
        del headers["content-disposition"]
        return Response(status_code=304, headers=headers)
    if method == "GET" and presign_seconds > 0:
        url = await anyio.to_thread.run_sync(lambda: storage.presigned_url(
            stored.id, expires_seconds=presign_seconds, content_type=stored.content_type,
            content_disposition=headers["content-disposition"]))
        return RedirectResponse(url, status_code=307, headers={"cache-control": "no-store"})
    if method == "HEAD":
        headers["content-length"] = str(stored.size)
        return Response(status_code=200, headers=headers, media_type=stored.content_type)
    byte_range = _forwarded_range(request_headers, etag, last_modified)
    stream = await anyio.to_thread.run_sync(
        lambda: storage.open_stream(stored.id, byte_range=byte_range))
    headers["content-length"] = str(stream.length)
    if stream.content_range:
        headers["content-range"] = stream.content_range
    return StreamingResponse(_chunks(stream), status_code=206 if stream.content_range else 200,
                             headers=headers, media_type=stored.content_type)


def _forwarded_range(request_headers: Headers, etag: str, last_modified: str) -> str | None:
    value = request_headers.get("range")
    if value is None or not value.strip().lower().startswith("bytes=") or "," in value:
        return None
    if_range = request_headers.get("if-range")
    if if_range is not None and if_range.strip() not in (etag, last_modified):
        return None  # the representation changed (or a weak tag): send it whole
    return value.strip()


async def _chunks(stream: BlobStream) -> AsyncIterator[bytes]:
    try:
        while chunk := await anyio.to_thread.run_sync(stream.read, READ_SIZE):
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(stream.close)
