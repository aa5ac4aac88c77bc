"""ingest/edge/body.py: RequestBody, the one reader and byte count of a request body, its
size limit and its deadlines (idle timeout, minimum rate)."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.types import Message

from ingest.edge.body import RequestBody
from ingest.errors import ClientDisconnected, RequestTimeout, RequestTooLarge
from tests.inprocess import body_of

pytestmark = pytest.mark.anyio


def trickle(chunks: list[bytes], *, pause: float, then_stall: bool = False) -> RequestBody:
    """A body whose client waits `pause` seconds before each chunk, then ends (or goes silent)."""
    pending = iter(chunks)

    async def receive() -> Message:
        await asyncio.sleep(pause)
        chunk = next(pending, None)
        if chunk is None:
            if then_stall:
                await asyncio.Event().wait()
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    return RequestBody(receive)


async def read_all(body: RequestBody) -> bytes:
    received = bytearray()
    while chunk := await body.read():
        received += chunk
    return bytes(received)


async def test_read_returns_every_chunk_in_order_skips_empty_ones_and_then_b_empty() -> None:
    body = body_of([b"ab", b"", b"cde", b""])
    assert [await body.read(), await body.read()] == [b"ab", b"cde"]
    assert (await body.read(), await body.read()) == (b"", b"")
    assert body.ended


async def test_received_counts_every_body_byte_and_first_byte_at_is_set_by_the_first() -> None:
    body = body_of([b"", b"abc", b"defg"])
    assert (body.received, body.first_byte_at) == (0, None)
    before = time.monotonic()
    assert await read_all(body) == b"abcdefg"
    assert body.received == 7
    assert body.first_byte_at is not None and body.first_byte_at >= before


async def test_a_disconnect_before_the_end_is_client_disconnected() -> None:
    body = body_of([b"abc"], disconnect=True)
    assert await body.read() == b"abc"
    with pytest.raises(ClientDisconnected):
        await body.read()
    assert body.ended


async def test_the_limit_refuses_the_chunk_that_passes_it_while_streaming() -> None:
    body = body_of([b"x" * 6, b"x" * 4, b"x"])
    body.limit(10)
    assert await body.read() == b"x" * 6
    assert await body.read() == b"x" * 4  # exactly the limit is allowed
    with pytest.raises(RequestTooLarge):
        await body.read()


async def test_a_limit_already_passed_is_refused_when_set() -> None:
    body = body_of([b"x" * 6])
    await body.read()
    with pytest.raises(RequestTooLarge):
        body.limit(5)


async def test_every_layer_of_one_request_shares_one_reader() -> None:
    scope: dict[str, object] = {"type": "http"}
    inner = body_of([b"abc"])
    first = RequestBody.of(scope, inner.receive)
    assert RequestBody.of(scope, inner.receive) is first
    assert RequestBody.of({"type": "http"}, inner.receive) is not first


async def test_a_client_that_sends_nothing_for_the_idle_timeout_gets_request_timeout() -> None:
    body = trickle([b"abc"], pause=0.0, then_stall=True)
    body.bound(idle_timeout=0.2)
    started = time.monotonic()
    try:
        assert await body.read() == b"abc"
        with pytest.raises(RequestTimeout, match="sent nothing"):
            await body.read()
    finally:
        body.unbind()
    assert 0.15 < time.monotonic() - started < 5


async def test_time_the_app_spends_between_reads_is_not_the_clients_idleness() -> None:
    body = body_of([b"a", b"b", b"c"])
    body.bound(idle_timeout=0.1)
    try:
        received = b""
        while chunk := await body.read():
            received += chunk
            await asyncio.sleep(0.25)  # our own slow storage, far past the idle timeout
    finally:
        body.unbind()
    assert received == b"abc"


async def test_a_trickle_below_the_minimum_rate_gets_request_timeout_though_never_idle_for_long() -> None:
    body = trickle([b"x"] * 100, pause=0.05)
    body.bound(idle_timeout=0.2, min_rate=1000)
    try:
        with pytest.raises(RequestTimeout, match="slower than 1000 bytes/s"):
            await read_all(body)
    finally:
        body.unbind()
    assert body.received < 100


async def test_a_body_at_the_minimum_rate_is_read_to_its_end() -> None:
    body = trickle([b"x" * 1000] * 6, pause=0.05)
    body.bound(idle_timeout=0.1, min_rate=1000)
    try:
        assert await read_all(body) == b"x" * 6000
    finally:
        body.unbind()
