"""uvicorn's httptools protocol with a deadline for request headers (slowloris).

uvicorn bounds idle keep-alive connections but not the time a client takes to send a
request's headers, so a client trickling one header byte at a time holds a connection
(and a file descriptor) forever. This protocol closes a connection whose request line and
headers have not all arrived within `header_timeout` seconds of the connection opening or
of the request's first byte. Bodies are bounded separately (`ingest.guards`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ingest.config import Settings, env_name


def _header_timeout() -> float:
    raw = os.environ.get(env_name("header_timeout"))
    return float(raw) if raw else float(Settings().header_timeout)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = _header_timeout()
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timeout > 0:
            self._header_deadline = self.loop.call_later(self._header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
