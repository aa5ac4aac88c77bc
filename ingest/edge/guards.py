"""Limits that keep one client from holding the server: concurrent uploads and idle bodies.

`UploadGuard` wraps the app (ASGI middleware) and applies to requests that carry an upload
body (POST, PUT, PATCH):
- at most `max_concurrent_uploads` at once per process; beyond it the request is answered
  503 `too_many_uploads` with `Retry-After` (RFC 9110 §10.2.3) before its body is read;
- every wait for the next body chunk is bounded by `body_idle_timeout` (ingest/edge/body.py): a client that stops
  sending (or one that vanished without a FIN) gets 408 `request_timeout`, and the upload's
  temporary files are discarded by the protocol module's usual error path;
- once a body has lasted `body_idle_timeout`, it must average `body_min_rate` bytes/s since
  its start (as Apache's mod_reqtimeout `MinRate`), so a trickle of a few bytes now and then,
  never idle for long, cannot hold an upload slot for ever. The average covers the whole
  body, so a short stall of our own storage (which pushes back on the client) is absorbed.
Slow header blocks (slowloris) are cut off earlier, in `ingest.server.protocol`, before any app
code runs.
"""

from __future__ import annotations

import math

from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.edge.body import RequestBody
from ingest.edge.errors import error_response
from ingest.edge.paths import UPLOAD_METHODS
from ingest.errors import TooManyUploads

RETRY_AFTER_SECONDS = 1


class UploadGuard:
    def __init__(self, app: ASGIApp, *, max_concurrent_uploads: int, body_idle_timeout: float,
                 body_min_rate: int = 0) -> None:
        self.app = app
        self._max_uploads = max_concurrent_uploads or math.inf
        self._idle_timeout = body_idle_timeout or math.inf
        self._min_rate = body_min_rate
        self.active_uploads = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UPLOAD_METHODS:
            await self.app(scope, receive, send)
            return
        if self.active_uploads >= self._max_uploads:
            error = TooManyUploads(
                f"the server is receiving {self.active_uploads} uploads already; retry shortly",
                headers={"retry-after": str(RETRY_AFTER_SECONDS), "connection": "close"})
            await error_response(error)(scope, receive, send)
            return
        self.active_uploads += 1
        body = RequestBody.of(scope, receive)
        body.bound(idle_timeout=self._idle_timeout, min_rate=self._min_rate)
        try:
            await self.app(scope, body.receive, send)
        finally:
            body.unbind()
            self.active_uploads -= 1
