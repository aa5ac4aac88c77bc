"""The HTTP answer of every error: `{"error": code, "detail": message}` with its status.

`error_response` makes it for an `IngestError` (ingest/errors.py), wherever it is answered:
in the app's exception handlers below, or in the middleware that refuses a request before any
route runs (upload guards, auth, tus version, progress tokens). `EXCEPTION_HANDLERS` is what
the app installs: an `IngestError` as itself, Starlette's own HTTP errors (unknown path,
method not allowed) with our codes, and anything else as 500 `internal_error`, which tells
the client nothing more (the exception goes on to the server's log).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from ingest.edge.paths import UPLOAD_METHODS
from ingest.errors import IngestError, MethodNotAllowed, NotFound

log = logging.getLogger("ingest")

# Starlette's HTTP errors that are one of ours; any other status gets the code `http_error`.
_HTTP_ERRORS: dict[int, type[IngestError]] = {404: NotFound, 405: MethodNotAllowed}


def error_response(error: IngestError, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """`error`'s answer, with its own headers and then `headers`."""
    return json_error(error.code, error.detail, status=error.status, headers={**error.headers, **(headers or {})})


def json_error(code: str, detail: str, *, status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The error body for a code outside the catalogue (`http_error`)."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def ingest_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, IngestError)
    if error.status >= 500:
        log.error("%s: %s", error.code, error.detail)
    if request.method in UPLOAD_METHODS:
        # The body may be partly unread; closing is the only way to stop receiving it
        # (RFC 9112 §9.6), and it frees the connection of a client we refused.
        return error_response(error, headers={"connection": "close"})
    return error_response(error)


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    ours = _HTTP_ERRORS.get(error.status_code)
    if ours is None:
        return json_error("http_error", error.detail, status=error.status_code, headers=error.headers)
    return error_response(ours(error.detail, headers=dict(error.headers or {})))


async def unexpected_error(request: Request, error: Exception) -> Response:
    return error_response(IngestError("the server failed; see its log"))


EXCEPTION_HANDLERS: Mapping[type[Exception], ExceptionHandler] = {
    IngestError: ingest_error, HTTPException: http_error, Exception: unexpected_error}
