"""HeaderDeadlineProtocol: how request bodies reach the app, and the uvicorn internals it
leans on (the header deadline and the lingering close are covered against a live server in
test_live_server.py and test_faults.py).

When a uvicorn release moves one of those internals, `test_the_uvicorn_internals_the_protocol_relies_on_are_there`
fails naming it; the pin in pyproject.toml is what keeps such a release out until then."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from ingest.server.protocol import HeaderDeadlineProtocol, protocol_factory

REPO = Path(__file__).resolve().parent.parent
# The methods HeaderDeadlineProtocol overrides, each calling uvicorn's own.
OVERRIDDEN = ("connection_made", "data_received", "on_body", "on_message_complete", "eof_received",
              "shutdown", "on_message_begin", "on_headers_complete", "connection_lost")

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
    assert bodies[0] is chunk, ("uvicorn no longer hands the app `bytes(cycle.body)` after "
                                "`on_body`'s `cycle.body += body`: the uncopied chunk path is gone")
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


def _internal(condition: bool, what: str) -> None:
    """A named failure: which uvicorn internal HeaderDeadlineProtocol relies on has moved."""
    version = importlib.metadata.version("uvicorn")
    assert condition, (f"uvicorn {version}: {what}; ingest/server/protocol.py relies on it "
                       "(see its docstring); fix the protocol before widening the uvicorn pin")


@pytest.mark.anyio
async def test_the_uvicorn_internals_the_protocol_relies_on_are_there() -> None:
    parameters = inspect.signature(HttpToolsProtocol.__init__).parameters
    _internal(list(parameters)[1:] == ["config", "server_state", "app_state", "_loop"],
              f"HttpToolsProtocol.__init__ takes {list(parameters)[1:]}, not (config, server_state, app_state, _loop)")
    for name in OVERRIDDEN:
        _internal(callable(getattr(HttpToolsProtocol, name, None)), f"HttpToolsProtocol.{name} is gone")
        _internal(name in vars(HeaderDeadlineProtocol), f"HeaderDeadlineProtocol no longer overrides {name}")
    on_body = inspect.getsource(HttpToolsProtocol.on_body)
    _internal("self.cycle.body += body" in on_body,
              "HttpToolsProtocol.on_body no longer does `self.cycle.body += body`")
    receive = inspect.getsource(RequestResponseCycle.receive)
    _internal('"body": bytes(self.body)' in receive and "self.body = bytearray()" in receive,
              "RequestResponseCycle.receive no longer hands out `bytes(self.body)` and resets it to `bytearray()`")
    for handler in ("on_response_complete", "timeout_keep_alive_handler", "send_400_response"):
        _internal("self.transport" in inspect.getsource(getattr(HttpToolsProtocol, handler)),
                  f"HttpToolsProtocol.{handler} no longer closes through `self.transport`")

    bodies: list[bytes] = []
    protocol = await _protocol_reading_into(bodies)
    _internal(isinstance(protocol.loop, asyncio.AbstractEventLoop), "HttpToolsProtocol.loop is not the event loop")
    cycle = protocol.cycle
    _internal(isinstance(cycle, RequestResponseCycle), "HttpToolsProtocol.cycle is not the request's cycle")
    _internal(type(cycle.body) is bytearray and not cycle.body,
              "RequestResponseCycle.body does not start as an empty bytearray")
    _internal(cycle.transport is protocol.transport and type(protocol.transport).__name__ == "_LingeringTransport",
              "the cycle does not write through HttpToolsProtocol.transport as set in connection_made")
    protocol.on_message_complete()
    await _until(lambda: bodies)
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_the_protocol_is_built_through_a_factory_with_its_header_timeout() -> None:
    config = Config(app=lambda scope, receive, send: None, lifespan="off", log_level="warning")
    config.load()
    # What uvicorn's Server.startup does for each connection with `config.http_protocol_class`.
    protocol = protocol_factory(7.5)(config=config, server_state=ServerState(), app_state={},
                                     _loop=asyncio.get_running_loop())
    assert isinstance(protocol, HeaderDeadlineProtocol)
    assert protocol.header_timeout == 7.5


def test_uvicorn_is_pinned_to_the_minor_versions_tested() -> None:
    """The protocol leans on uvicorn internals: pyproject allows only tested minor versions,
    and the installed uvicorn is one of them."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (requirement,) = [d for d in dependencies if re.match(r"uvicorn\b", d)]
    bounds = re.fullmatch(r"uvicorn\[standard\]>=(\d+)\.(\d+)(?:\.\d+)?,<(\d+)\.(\d+)", requirement)
    assert bounds, f"{requirement!r}: uvicorn needs a lower and an upper bound (>=X.Y,<X.Z)"
    low, high = (int(bounds[1]), int(bounds[2])), (int(bounds[3]), int(bounds[4]))
    installed = tuple(int(part) for part in importlib.metadata.version("uvicorn").split(".")[:2])
    assert low <= installed < high, f"uvicorn {installed} is outside the pinned {requirement!r}"
