"""The tus 1.0.0 HTTP edge: `/files/` (tusd's default path) and `/files/<upload_id>`.

Spec: https://tus.io/protocols/resumable-upload. Handlers translate headers to `TusService`
calls and back; errors are `IngestError`s, answered as JSON by ingest/edge/errors.py, and the
middleware below puts `Tus-Resumable` on every answer, 401s and 412s included, and
answers 412 to another protocol version once auth has let the request in.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.edge.body import RequestBody
from ingest.edge.errors import error_response
from ingest.edge.paths import TUS_PREFIX, is_tus_path
from ingest.errors import (
    IngestError,
    InvalidRequest,
    UnsupportedMediaType,
    UnsupportedTusVersion,
)
from ingest.observe.context import RequestContext
from ingest.tus.headers import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    OFFSET_CONTENT_TYPE,
    TUS_VERSION,
    format_metadata,
    http_date,
    parse_checksum,
    parse_concat,
    parse_length,
    parse_metadata,
)
from ingest.tus.service import TusService, TusUpload

# Headers a browser client on another origin must be allowed to send and to read
# (tus-js-client reads Location, Upload-Offset, Upload-Length... from every answer).
REQUEST_HEADERS = ("authorization", "content-type", "tus-resumable", "upload-length",
                   "upload-metadata", "upload-offset", "upload-checksum", "upload-concat",
                   "upload-defer-length", "x-http-method-override", "x-requested-with")
EXPOSED_HEADERS = ("location", "upload-offset", "upload-length", "upload-metadata",
                   "upload-defer-length", "upload-concat", "upload-expires", "tus-version",
                   "tus-resumable", "tus-extension", "tus-max-size", "tus-checksum-algorithm",
                   "ingest-file-id")
METHODS = ("POST", "HEAD", "PATCH", "DELETE", "OPTIONS")


def routes() -> list[Route]:
    return [
        Route(TUS_PREFIX + "/", collection, methods=["POST", "OPTIONS"], name="tus"),
        Route(TUS_PREFIX, collection, methods=["POST", "OPTIONS"]),
        Route(TUS_PREFIX + "/{upload_id}", resource, methods=["HEAD", "PATCH", "DELETE", "OPTIONS"],
              name="tus_upload"),
    ]


async def collection(request: Request) -> Response:
    if request.method == "OPTIONS":
        return _options(request)
    return await _create(request)


async def resource(request: Request) -> Response:
    if request.method == "OPTIONS":
        return _options(request)
    tus: TusService = request.app.state.tus
    upload_id = request.path_params["upload_id"]
    if request.method == "HEAD":
        upload = await tus.info(upload_id, request=_context(request))
        headers = _state_headers(request, upload)
        headers["cache-control"] = "no-store"
        return Response(status_code=200, headers=headers)
    if request.method == "DELETE":
        await tus.terminate(upload_id, request=_context(request))
        return Response(status_code=204)
    return await _patch(request, tus, upload_id)


def _options(request: Request) -> Response:
    settings = request.app.state.settings
    return Response(status_code=204, headers={
        "tus-version": TUS_VERSION, "tus-extension": ",".join(EXTENSIONS),
        "tus-max-size": str(settings.max_file_size),
        "tus-checksum-algorithm": ",".join(CHECKSUM_ALGORITHMS)})


async def _create(request: Request) -> Response:
    tus: TusService = request.app.state.tus
    metadata = parse_metadata(request.headers.get("upload-metadata"))
    concat = parse_concat(request.headers.get("upload-concat"))
    length = parse_length(request.headers.get("upload-length"), "Upload-Length")
    if concat is not None and concat[0] == "final":
        if length is not None:
            raise InvalidRequest("a final upload takes no Upload-Length: it is the sum of its parts")
        upload = await tus.concatenate(concat[1], metadata, request=_context(request))
        return _created(request, upload)
    defer = request.headers.get("upload-defer-length")
    if defer is not None and defer != "1":
        raise InvalidRequest("Upload-Defer-Length must be 1")
    if (length is None) == (defer is None):
        raise InvalidRequest("send exactly one of Upload-Length and Upload-Defer-Length: 1")
    with_upload = _media_type(request) == OFFSET_CONTENT_TYPE  # creation-with-upload
    # Every header is checked before the upload exists: a refused request leaves nothing.
    checksum = parse_checksum(request.headers.get("upload-checksum")) if with_upload else None
    upload = await tus.create(length=length, metadata=metadata, request=_context(request),
                              partial=concat is not None)
    if with_upload:
        try:
            upload = await tus.write(upload.upload_id, offset=0, body=_body(request),
                                     request=_context(request), checksum=checksum)
        except IngestError as error:
            # The upload exists whatever happened to its first bytes: say where, so the
            # client can resume there instead of starting over.
            error.headers.setdefault("location", _location(request, upload))
            raise
    return _created(request, upload)


def _created(request: Request, upload: TusUpload) -> Response:
    headers = _state_headers(request, upload, full=False)
    headers["location"] = _location(request, upload)
    return Response(status_code=201, headers=headers)


async def _patch(request: Request, tus: TusService, upload_id: str) -> Response:
    if _media_type(request) != OFFSET_CONTENT_TYPE:
        raise UnsupportedMediaType(f"PATCH takes Content-Type: {OFFSET_CONTENT_TYPE}")
    offset = parse_length(request.headers.get("upload-offset"), "Upload-Offset")
    if offset is None:
        raise InvalidRequest("Upload-Offset is required")
    upload = await tus.write(
        upload_id, offset=offset, body=_body(request), request=_context(request),
        checksum=parse_checksum(request.headers.get("upload-checksum")),
        length=parse_length(request.headers.get("upload-length"), "Upload-Length"))
    return Response(status_code=204, headers=_state_headers(request, upload, full=False))


def _state_headers(request: Request, upload: TusUpload, *, full: bool = True) -> dict[str, str]:
    headers = {"upload-offset": str(upload.offset)}
    if upload.file_id is not None:
        headers["ingest-file-id"] = upload.file_id
    elif not upload.complete:
        headers["upload-expires"] = http_date(upload.expires_at)
    if not full:
        return headers
    if upload.length is not None:
        headers["upload-length"] = str(upload.length)
    else:
        headers["upload-defer-length"] = "1"
    if upload.metadata:
        headers["upload-metadata"] = format_metadata(upload.metadata)
    if upload.concat == "partial":
        headers["upload-concat"] = "partial"
    elif upload.concat == "final":
        urls = " ".join(str(request.url_for("tus_upload", upload_id=part)) for part in upload.parts)
        headers["upload-concat"] = f"final;{urls}"
    return headers


def _location(request: Request, upload: TusUpload) -> str:
    return str(request.url_for("tus_upload", upload_id=upload.upload_id))


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def _body(request: Request) -> RequestBody:
    return RequestBody.of(request.scope, request.receive)


def _context(request: Request) -> RequestContext | None:
    return RequestContext.of(request.scope)


class TusHeaders:
    """For `/files` paths, outside auth: `Tus-Resumable` on every answer (401s included), and
    `X-HTTP-Method-Override` for clients behind proxies that only pass GET and POST."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_tus_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"tus-resumable", TUS_VERSION.encode())]
            await send(message)

        override = dict(scope["headers"]).get(b"x-http-method-override", b"").decode("latin-1").upper()
        if override in METHODS and scope["method"] == "POST":
            scope = {**scope, "method": override}
        await self.app(scope, receive, send_with_version)


class TusVersion:
    """For `/files` paths, inside auth (so that nothing answers a client without a token but a
    401): 412 for a request that does not speak this protocol version (OPTIONS need not say)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_tus_path(scope["path"]) or scope["method"] == "OPTIONS" or (
                dict(scope["headers"]).get(b"tus-resumable", b"").decode("latin-1") == TUS_VERSION):
            await self.app(scope, receive, send)
            return
        error = UnsupportedTusVersion(f"this server speaks tus {TUS_VERSION}; send Tus-Resumable: {TUS_VERSION}",
                                      headers={"tus-version": TUS_VERSION})
        await error_response(error)(scope, receive, send)
