"""One log line per request, and the request context the upload service is handed.

The line holds a request id (the client's `X-Request-Id` when it is a short token, else a new
one, echoed in the answer), the client address (after uvicorn's trusted-proxy handling), the
method, the path without its query string (so presigned URLs and tokens given as query
parameters never reach the log; Authorization is never read), the upload protocol, bytes in
and out, duration, outcome and error code. With `log_format=json` every log record, uvicorn's
included, is one JSON object per line; uvicorn's own access log is switched off in favour of
this one (`log_config`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.edge.body import RequestBody
from ingest.edge.paths import protocol_of
from ingest.observe.context import RequestContext, new_request_id

access_log = logging.getLogger("ingest.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_ERROR_BODY = 4096  # bytes of an error answer read to find its code


class AccessLog:
    def __init__(self, app: ASGIApp, *, enabled: bool = True, forward_headers: tuple[str, ...] = (),
                 requests: Counter | None = None) -> None:
        self.app = app
        self.enabled = enabled
        # Counts every request by protocol, outcome and error code, uploads refused before
        # their first byte included (`ingest_requests_total`).
        self.requests = requests
        self.forward_headers = {name.lower().encode("latin-1") for name in forward_headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        supplied_id = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = supplied_id if _REQUEST_ID.match(supplied_id) else new_request_id()
        client = scope.get("client")
        length = headers.get(b"content-length", b"")
        context = RequestContext(
            request_id=request_id, client=client[0] if client else None,
            protocol=protocol_of(scope["method"], scope["path"],
                                 headers.get(b"content-type", b"").decode("latin-1")),
            content_length=int(length) if length.isdigit() else None,
            forwarded_headers={name.decode("latin-1"): value.decode("latin-1")
                               for name, value in scope["headers"] if name in self.forward_headers})
        started = time.perf_counter()
        body = RequestBody.of(scope, receive)  # the one count of body bytes (ingest/edge/body.py)
        bytes_out = 0
        status: int | None = None
        error_body = bytearray()

        async def counting_send(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                bytes_out += len(body)
                if status is not None and status >= 400 and len(error_body) < MAX_ERROR_BODY:
                    error_body.extend(body[:MAX_ERROR_BODY])
            await send(message)

        context.keep_in(scope)  # the one context of the request, for auth and the handlers
        try:
            await self.app(scope, body.receive, counting_send)
        finally:
            outcome = "disconnected" if status is None else "ok" if status < 400 else "error"
            error = _error_code(bytes(error_body)) if outcome == "error" else None
            if self.requests is not None:
                self.requests.labels(context.protocol, outcome, error or "").inc()
            if self.enabled:
                self._log(scope, context, status, body.received, bytes_out,
                          time.perf_counter() - started, outcome, error)

    def _log(self, scope: Scope, context: RequestContext, status: int | None, bytes_in: int,
             bytes_out: int, duration: float, outcome: str, error: str | None) -> None:
        fields: dict[str, Any] = {
            "request_id": context.request_id, "client": context.client, "method": scope["method"],
            "path": _loggable_path(scope["path"]), "protocol": context.protocol, "status": status,
            "bytes_in": bytes_in, "bytes_out": bytes_out, "duration_ms": round(duration * 1000, 1),
            "outcome": outcome, "error": error,
            # Who asked: a token's name or an upload link's id, never a secret.
            "token": context.token, "link": context.link.id if context.link else None}
        who = f" token={context.token}" if context.token else f" link={fields['link']}" if fields["link"] else ""
        access_log.info(
            "%s %s %s %s %s in=%d out=%d %.1fms %s%s%s", fields["request_id"], fields["client"],
            fields["method"], fields["path"], status if status is not None else "-", bytes_in, bytes_out,
            fields["duration_ms"], outcome, f" {fields['error']}" if fields["error"] else "", who,
            extra={"fields": fields})


def _loggable_path(path: str) -> str:
    # A progress token lets its holder watch an upload: keep it out of the log.
    if path.startswith("/uploads/progress/"):
        return "/uploads/progress/…"
    if path.startswith("/l/"):  # an upload link's secret
        return "/l/…"
    # The path is percent-decoded: a client could put a newline in it and forge a log line.
    if not path.isprintable():
        return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in path)
    return path


def _error_code(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    code = parsed.get("error") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(), "logger": record.name}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_config(log_format: str, *, level: str = "INFO") -> dict[str, Any]:
    """A logging.config.dictConfig for uvicorn and ingest, in text or JSON lines."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log_format must be text or json, not {log_format!r}")
    formatter: dict[str, Any] = (
        {"()": "ingest.observe.accesslog.JsonFormatter"} if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"})
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        # uvicorn.error propagates to uvicorn; the others have the handler themselves.
        "loggers": {**{name: {"handlers": ["default"], "level": level, "propagate": False}
                       for name in ("uvicorn", "uvicorn.access", "ingest")},
                    "uvicorn.error": {"level": level}},
    }
