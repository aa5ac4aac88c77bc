"""Serving files kept in an object store: streamed through ingest, or a presigned redirect.

The same headers as local downloads (downloads.py): strong ETag = SHA-256, 304 on
If-None-Match / If-Modified-Since, safe Content-Disposition, nosniff and sandbox. Ranges are
evaluated by the store itself (S3 GetObject `Range`), so ingest parses none: one
`bytes=` range is forwarded; several ranges are not supported by S3 and the whole file is
sent instead, which RFC 9110 §14.2 allows (a server may ignore Range). If-Range is checked
here against the ETag or Last-Modified (RFC 9110 §13.1.5) before forwarding.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import formatdate

import anyio
import anyio.to_thread
from starlette.datastructures import Headers
from starlette.responses import RedirectResponse, Response, StreamingResponse

from ingest.downloads import SAFETY_HEADERS, content_disposition, entity_tag, not_modified
from ingest.models import StoredFile
from ingest.storage.base import BlobStream, StreamedBlobs

READ_SIZE = 1024 * 1024


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
