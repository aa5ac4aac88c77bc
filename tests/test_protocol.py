"""HeaderDeadlineProtocol: how request bodies reach the app (the header deadline and the
lingering close are covered against a live server in test_live_server.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from ingest.server.protocol import HeaderDeadlineProtocol

HEADERS = b"PUT /uploads/x.bin HTTP/1.1\r\nHost: test\r\nContent-Length: 9\r\n\r\n"


class FakeTransport:
    """Enough of an asyncio transport for uvicorn's protocol."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return False

    def set_protocol(self, protocol: object) -> None:
        pass


async def _protocol_reading_into(bodies: list[bytes]) -> HeaderDeadlineProtocol:
    """A protocol whose app appends every body message it receives to `bodies`, then answers."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            bodies.append(message["body"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = Config(app=app, lifespan="off", log_level="warning")
    config.load()
    protocol = HeaderDeadlineProtocol(config=config, server_state=ServerState(), app_state={},
                                      _loop=asyncio.get_running_loop(), header_timeout=30)
    protocol.connection_made(FakeTransport())  # type: ignore[arg-type]
    protocol.data_received(HEADERS)
    return protocol


async def _until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the app did not get there")


@pytest.mark.anyio
async def test_a_lone_body_chunk_reaches_the_app_as_the_same_object() -> None:
    bodies: list[bytes] = []
    protocol = await _protocol_reading_into(bodies)
    chunk = b"abcdef"
    protocol.on_body(chunk)
    await _until(lambda: len(bodies) == 1)
    assert bodies[0] is chunk
    protocol.on_body(b"ghi")
    protocol.on_message_complete()
    await _until(lambda: len(bodies) == 2)
    assert bodies == [b"abcdef", b"ghi"]
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_chunks_arriving_before_the_app_asks_are_joined_in_order() -> None:
    bodies: list[bytes] = []
    protocol = await _protocol_reading_into(bodies)
    for chunk in (b"abc", b"de", b"f", b"ghi"):
        protocol.on_body(chunk)
    protocol.on_message_complete()
    await _until(lambda: bodies)
    assert bodies == [b"abcdefghi"]
    assert type(bodies[0]) is bytes
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_a_body_split_across_reads_arrives_whole() -> None:
    bodies: list[bytes] = []
    protocol = await _protocol_reading_into(bodies)
    protocol.data_received(b"abcd")
    await _until(lambda: bodies)
    protocol.data_received(b"efghi")
    await _until(lambda: len(bodies) >= 2 and bodies[-1] == b"efghi")
    assert b"".join(bodies) == b"abcdefghi"
    protocol.connection_lost(None)
