"""ingest/edge/guards.py: UploadGuard, around a tiny ASGI app that reads the request body:
the concurrent-upload limit (503 with Retry-After before the body is read), the idle timeout
and the minimum rate (408), and which requests they apply to."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from ingest.edge.body import RequestBody
from ingest.edge.guards import RETRY_AFTER_SECONDS, UploadGuard
from ingest.errors import IngestError

pytestmark = pytest.mark.anyio


class Reader:
    """An app that reads the whole body, then (if `hold` is set) waits for `release`; it
    answers 200 with the bytes it read, or the JSON error a body read raised."""

    def __init__(self, *, hold: bool = False) -> None:
        self.hold = hold
        self.reading = asyncio.Event()
        self.release = asyncio.Event()
        self.bodies_read = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.bodies_read += 1
        self.reading.set()
        body = RequestBody.of(scope, receive)
        status, content = 200, b""
        try:
            while chunk := await body.read():
                content += chunk
            if self.hold:
                await self.release.wait()
        except IngestError as error:
            status, content = error.status, json.dumps(error.to_json()).encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": content})


def chunks_then(chunks: list[bytes], *, pause: float = 0.0, stall: bool = False) -> Callable[[], Awaitable[Message]]:
    pending = iter(chunks)

    async def receive() -> Message:
        await asyncio.sleep(pause)
        chunk = next(pending, None)
        if chunk is not None:
            return {"type": "http.request", "body": chunk, "more_body": True}
        if stall:
            await asyncio.Event().wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    return receive


async def call(app: UploadGuard, method: str,
               receive: Callable[[], Awaitable[Message]]) -> tuple[int, dict[str, str], bytes]:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": "/uploads", "headers": []}
    started: dict[str, Any] = {}
    body = bytearray()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        else:
            body.extend(message.get("body", b""))

    await asyncio.wait_for(app(scope, receive, send), 10)
    headers = {key.decode(): value.decode() for key, value in started.get("headers", [])}
    return started["status"], headers, bytes(body)


async def test_an_upload_beyond_the_limit_gets_503_with_retry_after_before_its_body_is_read() -> None:
    reader = Reader(hold=True)
    guard = UploadGuard(reader, max_concurrent_uploads=1, body_idle_timeout=0)
    first = asyncio.ensure_future(call(guard, "PUT", chunks_then([b"first"])))
    await reader.reading.wait()
    status, headers, body = await call(guard, "POST", chunks_then([b"second"]))
    assert status == 503
    assert json.loads(body)["error"] == "too_many_uploads"
    assert headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert headers["connection"] == "close"
    assert reader.bodies_read == 1  # the refused upload never reached the app
    reader.release.set()
    assert (await first)[::2] == (200, b"first")
    assert guard.active_uploads == 0


async def test_a_slot_is_given_back_when_the_upload_ends_so_the_next_one_passes() -> None:
    guard = UploadGuard(Reader(), max_concurrent_uploads=1, body_idle_timeout=0)
    for index in range(3):
        status, _, body = await call(guard, "PATCH", chunks_then([b"upload %d" % index]))
        assert (status, body) == (200, b"upload %d" % index)
    assert guard.active_uploads == 0


async def test_a_slot_is_given_back_when_the_app_raises() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the app failed")

    guard = UploadGuard(failing, max_concurrent_uploads=1, body_idle_timeout=0)
    with pytest.raises(RuntimeError):
        await call(guard, "POST", chunks_then([]))
    assert guard.active_uploads == 0


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "OPTIONS"])
async def test_requests_without_an_upload_body_are_neither_counted_nor_refused(method: str) -> None:
    reader = Reader(hold=True)
    guard = UploadGuard(reader, max_concurrent_uploads=1, body_idle_timeout=0)
    held = asyncio.ensure_future(call(guard, "PUT", chunks_then([b"x"])))
    await reader.reading.wait()
    other = asyncio.ensure_future(call(guard, method, chunks_then([])))
    await asyncio.sleep(0.05)
    assert guard.active_uploads == 1
    reader.release.set()
    assert (await other)[0] == 200
    assert (await held)[0] == 200


async def test_an_upload_that_stops_sending_gets_408_within_the_idle_timeout() -> None:
    guard = UploadGuard(Reader(), max_concurrent_uploads=0, body_idle_timeout=0.2)
    status, _, body = await call(guard, "PUT", chunks_then([b"some bytes"], stall=True))
    assert (status, json.loads(body)["error"]) == (408, "request_timeout")
    assert guard.active_uploads == 0


async def test_an_upload_trickling_below_the_minimum_rate_gets_408() -> None:
    guard = UploadGuard(Reader(), max_concurrent_uploads=0, body_idle_timeout=0.2, body_min_rate=1000)
    status, _, body = await call(guard, "POST", chunks_then([b"x"] * 200, pause=0.03))
    assert status == 408
    assert "slower than 1000 bytes/s" in json.loads(body)["detail"]


async def test_without_limits_a_slow_upload_is_read_to_its_end() -> None:
    guard = UploadGuard(Reader(), max_concurrent_uploads=0, body_idle_timeout=0)
    status, _, body = await call(guard, "PUT", chunks_then([b"a", b"b", b"c"], pause=0.1))
    assert (status, body) == (200, b"abc")
