"""Live progress of an upload, as Server-Sent Events.

A client tags an upload with `?progress=<token>` or an `X-Progress-Id: <token>` header (the
names nginx's upload-progress module uses) and follows it at `GET /uploads/progress/<token>`,
before, during or shortly after the upload. The stream sends `progress` events (bytes
received, expected total from Content-Length, files finished, rate) at most every 100 ms, and
ends with one `complete` event (the 201 body: ids and sha256) or one `failed` event (the
error body and status). See https://html.spec.whatwg.org/multipage/server-sent-events.html.

The hot path adds nothing per body chunk: the stream reads the request body's own byte count
(ingest/edge/body.py) on its own clock. Progress lives in the process that receives the upload:
with several workers, the stream must reach the same process (one worker, or a proxy with
sticky routing on the token).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import anyio
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.edge.body import RequestBody
from ingest.edge.errors import error_response
from ingest.errors import ClientDisconnected, InvalidRequest, NotFound
from ingest.observe.context import RequestContext

PUBLISH_INTERVAL = 0.1      # seconds between progress events of one stream
WAIT_FOR_UPLOAD = 60.0      # seconds a stream waits for an upload that has not started
RETAIN = 300.0              # seconds an ended upload's result stays readable
MAX_CHANNELS = 10_000       # tokens known at once; the oldest ended ones go first
MAX_RESULT_SIZE = 1024 * 1024  # bytes of the final answer kept for the stream
PING_SECONDS = 15           # SSE comment keeping idle proxies from closing the stream

_TOKEN = re.compile(r"^[A-Za-z0-9._~-]{8,128}$")
HEADER = b"x-progress-id"


@dataclass
class Channel:
    token: str
    created: float = field(default_factory=time.monotonic)
    attached: bool = False
    expected: int | None = None
    body: RequestBody | None = None  # the upload's body, whose count is read on our own clock
    request: RequestContext | None = None
    result: dict[str, Any] | None = None
    ended_at: float | None = None
    ended: anyio.Event = field(default_factory=anyio.Event)

    @property
    def received(self) -> int:
        return self.body.received if self.body is not None else 0

    def snapshot(self) -> dict[str, Any]:
        first_byte = self.body.first_byte_at if self.body is not None else None
        elapsed = time.monotonic() - first_byte if first_byte else 0.0
        return {"received": self.received, "expected": self.expected,
                "files_finished": self.request.files_received if self.request else 0,
                "rate": round(self.received / elapsed) if elapsed > 0 else 0}

    def end(self, status: int, body: bytes) -> None:
        if self.ended_at is not None:
            return
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        if not isinstance(parsed, dict):
            parsed = {}
        self.result = {"status": status, **parsed}
        self.ended_at = time.monotonic()
        self.ended.set()


class ProgressBoard:
    """Tokens -> channels, in this process."""

    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}

    def attach(self, token: str) -> Channel:
        """An upload tagged with `token` begins."""
        self._purge()
        channel = self._channels.get(token)
        if channel is not None and channel.attached and channel.ended_at is None:
            raise InvalidRequest("this progress token is already used by an upload in progress")
        if channel is None or channel.attached:
            channel = self._channels[token] = Channel(token)
        channel.attached = True
        return channel

    def watch(self, token: str) -> Channel:
        """A stream wants `token`; the upload may not have started yet."""
        self._purge()
        channel = self._channels.get(token)
        if channel is None:
            channel = self._channels[token] = Channel(token)
        return channel

    def _purge(self) -> None:
        now = time.monotonic()
        for token, channel in list(self._channels.items()):
            ended_long_ago = channel.ended_at is not None and now - channel.ended_at > RETAIN
            never_used = not channel.attached and now - channel.created > RETAIN
            if ended_long_ago or never_used:
                del self._channels[token]
        if len(self._channels) >= MAX_CHANNELS:
            done = sorted((c for c in self._channels.values() if c.ended_at is not None or not c.attached),
                          key=lambda c: c.created)
            for channel in done[: len(self._channels) - MAX_CHANNELS + 1]:
                del self._channels[channel.token]
        if len(self._channels) >= MAX_CHANNELS:
            raise InvalidRequest("too many progress tokens are in use; try again later")


def token_of(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == HEADER:
            return str(value.decode("latin-1"))
    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query).get("progress") if "progress=" in query else None
    return values[0] if values else None


class ProgressMiddleware:
    """Counts the body bytes of tagged uploads and keeps their final answer for the stream."""

    def __init__(self, app: ASGIApp, *, board: ProgressBoard) -> None:
        self.app = app
        self.board = board

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = token_of(scope) if scope["type"] == "http" and scope["method"] in ("POST", "PUT") else None
        if token is None:
            await self.app(scope, receive, send)
            return
        if not _TOKEN.match(token):
            error = InvalidRequest("a progress token is 8 to 128 letters, digits or ._~-")
            await error_response(error)(scope, receive, send)
            return
        try:
            channel = self.board.attach(token)
        except InvalidRequest as error:
            await error_response(error)(scope, receive, send)
            return
        channel.request = RequestContext.of(scope)
        channel.expected = _content_length(scope)
        channel.body = RequestBody.of(scope, receive)
        status = 500
        answer = bytearray()

        async def keeping_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                if len(answer) < MAX_RESULT_SIZE:
                    answer.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    channel.end(status, bytes(answer))
            await send(message)

        try:
            await self.app(scope, channel.body.receive, keeping_send)
        finally:
            if channel.ended_at is None:
                unanswered = ClientDisconnected("the upload ended without an answer")
                channel.end(499, json.dumps(unanswered.to_json()).encode())


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


async def stream_progress(request: Request) -> Response:
    board: ProgressBoard = request.app.state.progress
    token = request.path_params["token"]
    if not _TOKEN.match(token):
        raise InvalidRequest("a progress token is 8 to 128 letters, digits or ._~-")
    channel = board.watch(token)
    return EventSourceResponse(_events(channel), ping=PING_SECONDS,
                               headers={"cache-control": "no-store", "x-accel-buffering": "no"})


async def _events(channel: Channel) -> AsyncIterator[dict[str, str]]:
    with anyio.move_on_after(WAIT_FOR_UPLOAD) as waiting:
        while not channel.attached:
            await anyio.sleep(PUBLISH_INTERVAL)
    if waiting.cancelled_caught:
        unused = NotFound("no upload used this progress token")
        yield {"event": "failed", "data": json.dumps({"status": unused.status, **unused.to_json()})}
        return
    last: tuple[int, int] | None = None
    while True:
        ended = channel.ended.is_set()
        snapshot = channel.snapshot()
        # Only news is sent: bytes or finished files moved since the previous event.
        if (snapshot["received"], snapshot["files_finished"]) != last:
            last = (snapshot["received"], snapshot["files_finished"])
            yield {"event": "progress", "data": json.dumps(snapshot)}
        if ended:
            assert channel.result is not None
            outcome = "complete" if 200 <= channel.result["status"] < 300 else "failed"
            yield {"event": outcome, "data": json.dumps(channel.result)}
            return
        with anyio.move_on_after(PUBLISH_INTERVAL):
            await channel.ended.wait()
