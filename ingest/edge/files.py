"""The `/uploads` HTTP API: multipart and raw uploads in; the list, one file's description,
its bytes and its deletion out. Handlers translate HTTP to the protocol modules and the upload
service, and back.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ingest.config import Settings
from ingest.downloads import stored_file_response
from ingest.edge.body import RequestBody
from ingest.edge.digests import sha256_from_content_digest
from ingest.errors import InvalidRequest, LengthRequired, RequestTooLarge, UnsupportedMediaType
from ingest.models import StoredFile, clean_filename, clean_media_type
from ingest.multipart.framing import parse_part_headers
from ingest.multipart.parser import receive_form
from ingest.observe.context import RequestContext
from ingest.raw import receive_raw
from ingest.uploads import UploadService

MAX_PAGE_SIZE = 1000


class _AnythingConvertor(PathConvertor):
    """Like `path`, but also matching control characters, so that a name holding one gets
    our 400 invalid_filename instead of a 404 from the router."""

    regex = r"[\s\S]+"


register_url_convertor("anything", _AnythingConvertor())


def routes() -> list[BaseRoute]:
    return [
        Route("/uploads", create_uploads, methods=["POST"], name="uploads"),
        Route("/uploads", list_uploads, methods=["GET"]),
        Route("/uploads/{file_id}", get_upload, methods=["GET"], name="upload"),
        Route("/uploads/{file_id}", delete_upload, methods=["DELETE"]),
        Route("/uploads/{file_id}/content", get_content, methods=["GET", "HEAD"], name="content"),
        Route("/uploads/{filename:anything}", put_upload, methods=["PUT"]),
    ]


async def create_uploads(request: Request) -> Response:
    service: UploadService = request.app.state.service
    settings: Settings = request.app.state.settings
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        form = await receive_form(content_type, request_body(request), service, settings,
                                  request=RequestContext.of(request.scope))
        stored = await service.commit(form.files)
        return _created(request, stored, fields=form.fields)
    if media_type == "application/octet-stream":
        filename = request.query_params.get("filename") or _filename_from_disposition(request)
        return await _store_raw(request, filename)
    raise UnsupportedMediaType(
        "POST /uploads takes multipart/form-data or application/octet-stream, "
        f"not {media_type or 'a body without Content-Type'}")


async def put_upload(request: Request) -> Response:
    return await _store_raw(request, request.path_params["filename"])


async def _store_raw(request: Request, filename: str | None) -> Response:
    service: UploadService = request.app.state.service
    name = clean_filename(filename)
    digest_header = request.headers.get("content-digest")
    incoming = await receive_raw(
        request_body(request), service, filename=name,
        content_type=clean_media_type(request.headers.get("content-type"), name),
        expected_sha256=sha256_from_content_digest(digest_header) if digest_header else None,
        request=RequestContext.of(request.scope))
    stored = await service.commit([incoming])
    return _created(request, stored)


async def list_uploads(request: Request) -> Response:
    service: UploadService = request.app.state.service
    limit = _int_param(request, "limit", default=100, low=1, high=MAX_PAGE_SIZE)
    cursor = request.query_params.get("cursor")
    after = _decode_cursor(cursor) if cursor else None
    page = await service.page(limit=limit + 1, after=after, link=request.query_params.get("link") or None)
    items, more = page[:limit], len(page) > limit
    next_cursor = _encode_cursor(items[-1]) if more else None
    next_url = str(request.url.include_query_params(cursor=next_cursor)) if next_cursor else None
    return JSONResponse({"items": [_describe(request, s) for s in items],
                         "next_cursor": next_cursor, "next": next_url})


async def get_upload(request: Request) -> Response:
    service: UploadService = request.app.state.service
    stored = await service.get(request.path_params["file_id"])
    return JSONResponse(_describe(request, stored))


async def delete_upload(request: Request) -> Response:
    service: UploadService = request.app.state.service
    await service.delete(request.path_params["file_id"], request=RequestContext.of(request.scope))
    return Response(status_code=204)


async def get_content(request: Request) -> Response:
    service: UploadService = request.app.state.service
    stored = await service.get(request.path_params["file_id"])
    return await stored_file_response(stored, service.storage, service.settings, request.headers,
                                      method=request.method)


# --- request and response helpers ---------------------------------------------------------

def request_body(request: Request) -> RequestBody:
    """The body, bounded by max_request_size (413 early from Content-Length)."""
    limit = request.app.state.settings.max_request_size
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise RequestTooLarge(f"the body of {declared} bytes exceeds the limit of {limit} bytes")
    elif "chunked" not in request.headers.get("transfer-encoding", "").lower():
        raise LengthRequired("send Content-Length or a chunked body")
    body = RequestBody.of(request.scope, request.receive)
    body.limit(limit)
    return body


def _created(request: Request, stored: list[StoredFile],
             fields: dict[str, str | list[str]] | None = None) -> Response:
    described = [_describe(request, s) for s in stored]
    body: dict[str, Any] = {"files": described}
    if fields is not None:
        body["fields"] = fields
    headers = {"location": described[0]["url"]} if len(described) == 1 else {}
    return JSONResponse(body, status_code=201, headers=headers)


def _describe(request: Request, stored: StoredFile) -> dict[str, Any]:
    return {**stored.to_json(),
            "url": str(request.url_for("upload", file_id=stored.id)),
            "content_url": str(request.url_for("content", file_id=stored.id))}


def _filename_from_disposition(request: Request) -> str | None:
    header = request.headers.get("content-disposition")
    if not header:
        return None
    # One parser for Content-Disposition parameters: the multipart one.
    headers = parse_part_headers(
        f"Content-Disposition: form-data; name=body; {header.partition(';')[2]}\r\n".encode())
    return headers.filename


def _int_param(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _encode_cursor(stored: StoredFile) -> str:
    return base64.urlsafe_b64encode(f"{stored.created_at}|{stored.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created_at, _, file_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("cursor is not one this server gave out") from None
    if not file_id:
        raise InvalidRequest("cursor is not one this server gave out")
    return created_at, file_id
