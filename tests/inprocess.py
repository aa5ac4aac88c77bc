"""A synchronous, in-process driver of the ASGI app for property-based tests.

Hypothesis runs thousands of examples per test; starting an app (catalog, sweeper) per
example would dominate the run. `InProcessApp` starts one app and its lifespan on a private
event loop and sends raw ASGI requests to it: the body arrives in the chunks the test chose,
and a body may end in `http.disconnect`, as a client closing its socket would make it.
Any exception escaping the app (which a real server would turn into a bare 500 and a
traceback in its log) is re-raised here, so it fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.types import Message

from ingest.app import create_app
from ingest.config import Settings
from ingest.edge.body import RequestBody

REQUEST_TIMEOUT = 30.0  # seconds; far above any single in-process request, so only a hang trips it


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


def body_of(chunks: Sequence[bytes], *, disconnect: bool = False) -> RequestBody:
    """A request body that arrives in these chunks, then ends (or the client disconnects)."""
    messages: list[Message] = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    messages.append({"type": "http.disconnect"} if disconnect
                    else {"type": "http.request", "body": b"", "more_body": False})
    pending = iter(messages)

    async def receive() -> Message:
        return next(pending)

    return RequestBody(receive)


class InProcessApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: Starlette = create_app(settings)
        self._runner = asyncio.Runner()

    def __enter__(self) -> InProcessApp:
        # The lifespan (catalog, sweeper task group) must be entered and left in one task.
        self._runner.run(self._start())
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._runner.run(self._stop())
        self._runner.close()

    async def _start(self) -> None:
        self._started, self._stopping = asyncio.Event(), asyncio.Event()
        self._lifespan_task = asyncio.get_running_loop().create_task(self._hold_lifespan())
        await self._started.wait()

    async def _hold_lifespan(self) -> None:
        async with self.app.router.lifespan_context(self.app):
            self._started.set()
            await self._stopping.wait()

    async def _stop(self) -> None:
        self._stopping.set()
        await self._lifespan_task

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def request(self, method: str, path: str, *, query: bytes = b"",
                headers: Sequence[tuple[bytes, bytes]] = (), chunks: Sequence[bytes] = (),
                disconnect: bool = False, raw_path: bytes | None = None,
                headers_only: bool = False) -> Answer:
        """One request; `disconnect` ends the body with a client disconnect instead of its end;
        `headers_only` returns at the response's start (for endless streams), body empty."""
        return self._runner.run(asyncio.wait_for(
            self.arequest(method, path, query=query, headers=headers, chunks=chunks,
                          disconnect=disconnect, raw_path=raw_path, headers_only=headers_only),
            REQUEST_TIMEOUT))

    async def arequest(self, method: str, path: str, *, query: bytes = b"",
                       headers: Sequence[tuple[bytes, bytes]] = (), chunks: Sequence[bytes] = (),
                       disconnect: bool = False, raw_path: bytes | None = None,
                       headers_only: bool = False) -> Answer:
        messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
        if disconnect:
            messages.append({"type": "http.disconnect"})
        else:
            messages.append({"type": "http.request", "body": b"", "more_body": False})
        pending = iter(messages)

        async def receive() -> dict[str, Any]:
            message = next(pending, None)
            if message is None:
                # Everything was read: like a server, block until the response is done.
                await asyncio.Event().wait()
            assert message is not None
            return message

        started: dict[str, Any] = {}
        body = bytearray()
        response_started = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
                response_started.set()
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path,
            "raw_path": raw_path if raw_path is not None else path.encode("utf-8", "surrogateescape"),
            "query_string": query, "root_path": "",
            "headers": [(b"host", b"testserver"), *[(k.lower(), v) for k, v in headers]],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {},
        }
        call = asyncio.ensure_future(self.app(scope, receive, send))  # type: ignore[arg-type]
        if headers_only:
            waiter = asyncio.ensure_future(response_started.wait())
            await asyncio.wait([call, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
                body.clear()
        if not call.cancelled():
            await call  # re-raises what escaped the app
        assert started, "the app sent no response"
        return Answer(status=started["status"],
                      headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in started["headers"]],
                      body=bytes(body))
