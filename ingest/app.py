"""The composition root: settings -> storage + catalog -> upload service -> routes.

Only this module picks concrete backends. Handlers translate HTTP to the protocol modules
and back; every `IngestError` becomes `{"error": code, "detail": ...}` in one handler.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest import tus
from ingest.backends import require_extra
from ingest.catalog.base import Catalog
from ingest.catalog.sqlite import SqliteCatalog
from ingest.config import Settings
from ingest.downloads import file_response, object_response
from ingest.edge.access import Auth, parse_tokens
from ingest.edge.body import RequestBody
from ingest.edge.digests import sha256_from_content_digest
from ingest.edge.guards import UPLOAD_METHODS, UploadGuard
from ingest.errors import (
    IngestError,
    InvalidRequest,
    LengthRequired,
    NotFound,
    RequestTooLarge,
    UnsupportedMediaType,
)
from ingest.links import http as links_http
from ingest.models import StoredFile, clean_filename, clean_media_type
from ingest.multipart.framing import parse_part_headers
from ingest.multipart.parser import receive_form
from ingest.observe import operations
from ingest.observe.context import RequestContext
from ingest.observe.events import HookTarget
from ingest.observe.hooks import HookCallable
from ingest.raw import receive_raw
from ingest.server import banner
from ingest.server.tuning import tune_allocator
from ingest.storage.base import LocalFiles, ResumableStorage, Storage, StreamedBlobs
from ingest.storage.local import LocalStorage
from ingest.storage.local_partials import LocalPartials
from ingest.storage.session_locks import FileSessionLocks, PostgresHandOver, PostgresSessionLocks
from ingest.uploads import UploadService
from ingest.web import browser, openapi

log = logging.getLogger("ingest")

MAX_PAGE_SIZE = 1000


class _AnythingConvertor(PathConvertor):
    """Like `path`, but also matching control characters, so that a name holding one gets
    our 400 invalid_filename instead of a 404 from the router."""

    regex = r"[\s\S]+"


register_url_convertor("anything", _AnythingConvertor())


def create_app(settings: Settings | None = None,
               hooks: Sequence[HookCallable | HookTarget] = ()) -> Starlette:
    """`hooks`: Python callables (or targets) receiving upload events; see ingest/observe/events.py."""
    settings = settings or Settings.from_env()
    tune_allocator()
    storage = _storage(settings)
    events = operations.build_events(settings, hooks)
    service = UploadService(settings, storage, _catalog(settings), events)
    partials, session_locks, handover = _partials(settings, storage)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        banner.log_banner(settings)
        async with operations.run_background(settings, events), anyio.create_task_group() as background:
            # Before serving, with hooks delivered: finish the tus commits a crash cut short.
            await tus.recover(app.state.tus)
            background.start_soon(_sweep_periodically, service)
            background.start_soon(tus.sweep_periodically, app.state.tus)
            if handover is not None:
                background.start_soon(handover.listen, app.state.tus.locks.ask_to_release)
            try:
                yield
            finally:
                background.cancel_scope.cancel()
        await service.stop()
        if session_locks is not None:
            await anyio.to_thread.run_sync(session_locks.close)

    routes = [
        *operations.routes(settings),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi_spec, methods=["GET"]),
        Route("/uploads", create_uploads, methods=["POST"], name="uploads"),
        Route("/uploads", list_uploads, methods=["GET"]),
        Route("/uploads/{file_id}", get_upload, methods=["GET"], name="upload"),
        Route("/uploads/{file_id}", delete_upload, methods=["DELETE"]),
        Route("/uploads/{file_id}/content", get_content, methods=["GET", "HEAD"], name="content"),
        Route("/uploads/{filename:anything}", put_upload, methods=["PUT"]),
        *links_http.routes(),
        *browser.routes(),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan,
        exception_handlers={IngestError: ingest_error, HTTPException: http_error,
                            Exception: unexpected_error},
    )
    app.state.settings = settings
    app.state.service = service
    app.state.links = service.links
    app.add_middleware(UploadGuard, max_concurrent_uploads=settings.max_concurrent_uploads,
                       body_idle_timeout=settings.body_idle_timeout, body_min_rate=settings.body_min_rate)
    tus.install(app, settings, service, partials)  # before auth: auth wraps tus's version check
    app.state.tus.handover = handover
    app.add_middleware(Auth, tokens=parse_tokens(settings.tokens), find_link=service.links.find)
    tus.install_edge(app, settings)  # after auth: tus headers and CORS preflights wrap it
    operations.install_middleware(app, settings)  # last: the access log wraps everything
    return app


def _storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        require_extra("s3")
        from ingest.storage.s3 import S3Storage, make_client

        client = make_client(endpoint=settings.s3_endpoint, region=settings.s3_region,
                             access_key=settings.s3_access_key, secret_key=settings.s3_secret_key)
        return S3Storage(client, settings.s3_bucket, part_size=settings.s3_part_size,
                         parts_in_flight=settings.s3_parts_in_flight,
                         max_file_size=settings.max_file_size)
    if settings.storage != "local":
        raise ValueError(f"INGEST_STORAGE: unknown storage {settings.storage!r} (local or s3)")
    storage = LocalStorage(settings.data_dir, fsync=settings.fsync, write_behind=settings.write_behind)
    storage.prepare()
    return storage


def _partials(settings: Settings, storage: Storage) -> tuple[
        ResumableStorage, PostgresSessionLocks | FileSessionLocks | None, PostgresHandOver | None]:
    """tus partial uploads beside the blobs; on S3 with one session per upload across nodes
    (PostgreSQL advisory locks and hand-over requests when the catalog is PostgreSQL)."""
    if isinstance(storage, LocalStorage):
        partials = LocalPartials(storage, settings.data_dir)
        partials.prepare()
        return partials, None, None
    from ingest.storage.s3 import S3Storage
    from ingest.storage.s3_partials import S3Partials

    assert isinstance(storage, S3Storage)
    if settings.catalog_url:
        locks = PostgresSessionLocks(settings.catalog_url)
        return S3Partials(storage, locks), locks, PostgresHandOver(settings.catalog_url, locks)
    file_locks = FileSessionLocks(settings.data_dir / "locks")
    return S3Partials(storage, file_locks), file_locks, None


def _catalog(settings: Settings) -> Catalog:
    if settings.catalog_url:
        require_extra("postgres")
        from ingest.catalog.postgres import PostgresCatalog

        return PostgresCatalog(settings.catalog_url)
    return SqliteCatalog(settings.catalog_path)


async def _sweep_periodically(service: UploadService) -> None:
    interval = min(3600.0, max(60.0, service.settings.temp_max_age / 4))
    while True:
        await anyio.sleep(interval)
        try:
            await service.sweep(temp_older_than=service.settings.temp_max_age)
        except Exception:
            log.exception("periodic sweep failed")


# --- handlers ---------------------------------------------------------------------------

async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def openapi_spec(request: Request) -> Response:
    return JSONResponse(openapi.spec())


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
    storage = service.storage
    if isinstance(storage, StreamedBlobs):
        try:
            return await object_response(stored, storage, request.headers, method=request.method,
                                         presign_seconds=service.settings.s3_presign_seconds)
        except FileNotFoundError:
            raise NotFound(f"the bytes of {stored.id} are missing from storage") from None
    if not isinstance(storage, LocalFiles):
        raise NotFound("this storage backend cannot serve files directly")
    path = storage.path_of(stored.id)
    prefix = service.settings.accel_redirect_prefix
    # nginx's internal location mirrors the files directory: the same relative path below it.
    accel_redirect = (prefix.rstrip("/") + "/" + path.relative_to(service.settings.files_dir).as_posix()
                      if prefix else None)
    try:
        return file_response(stored, path, request.headers, method=request.method,
                             accel_redirect=accel_redirect)
    except FileNotFoundError:
        raise NotFound(f"the bytes of {stored.id} are missing from storage") from None


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


# --- errors and auth ----------------------------------------------------------------------

async def ingest_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, IngestError)
    if error.status >= 500:
        log.error("%s: %s", error.code, error.detail)
    headers = error.headers
    if request.method in UPLOAD_METHODS:
        # The body may be partly unread; closing is the only way to stop receiving it
        # (RFC 9112 §9.6), and it frees the connection of a client we refused.
        headers = {**headers, "connection": "close"}
    return JSONResponse(error.to_json(), status_code=error.status, headers=headers)


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return JSONResponse({"error": code, "detail": error.detail}, status_code=error.status_code,
                        headers=error.headers)


async def unexpected_error(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": "internal_error", "detail": "the server failed; see its log"},
                        status_code=500)
