"""uvicorn's httptools protocol with a deadline for request headers and a lingering close.

uvicorn bounds idle keep-alive connections but not the time a client takes to send a
request's headers, so a client trickling one header byte at a time holds a connection
(and a file descriptor) forever. This protocol closes a connection whose request line and
headers have not all arrived within `header_timeout` seconds of the connection opening or
of the request's first byte. Bodies are bounded separately (`ingest.edge.guards`).

An upload refused mid-body is answered with `Connection: close`, and uvicorn then closes
the socket at once. Closing with unread bytes in the receive buffer makes the kernel send a
RST, which can reach the client (or nginx, which then answers 502) before it has read the
answer. So, as nginx does (`lingering_close`), such a close first sends the answer and a
FIN, then reads and discards what the client still sends until it closes its side, goes
quiet for `LINGER_IDLE_SECONDS` or `LINGER_MAX_SECONDS` pass.

Body chunks reach the app uncopied when they can: uvicorn gathers each chunk into a
`bytearray` (`cycle.body += body` in `on_body`) and hands the app `bytes(cycle.body)`, two
copies of every body byte on the event loop, although httptools already made a fresh `bytes`
object for the chunk. While nothing is pending, `on_body` starts the pending body as that
`bytes` object itself: `+=` on empty bytes keeps the operand and `bytes()` of bytes is the same
object, so a lone chunk travels by reference; chunks arriving before the app asks are gathered
in a `bytearray` as before.

All of this leans on uvicorn's `httptools_impl` internals (the methods overridden here,
`self.cycle`, `cycle.body`, `self.transport`, `self.loop`), which is why pyproject pins uvicorn
to the minor versions tested and `tests/test_protocol.py` names each one it checks.

uvicorn builds one protocol per connection by calling `http=` with `config`, `server_state`,
`app_state` and `_loop`; `protocol_factory(header_timeout)` is such a callable, made once from
the settings and pickled with uvicorn's config into each worker process, so no connection
reads the environment or builds Settings.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

LINGER_IDLE_SECONDS = 5.0   # nginx's lingering_timeout
LINGER_MAX_SECONDS = 30.0   # nginx's lingering_time


def protocol_factory(header_timeout: float) -> Callable[..., HeaderDeadlineProtocol]:
    """What uvicorn's `http=` is given: it builds each connection's protocol. A partial of a
    module-level class, so it pickles into spawned workers."""
    return functools.partial(HeaderDeadlineProtocol, header_timeout=header_timeout)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, header_timeout: float) -> None:
        super().__init__(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self._header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None
        self._body_unread = False  # a request's headers arrived but not all of its body
        self._lingering: _Lingering | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _LingeringTransport(transport, self)  # type: ignore[assignment]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:
            self._lingering.discarded()
            return
        super().data_received(data)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        pending: object = cycle.body
        if type(pending) is bytearray and not pending:
            cycle.body = b""  # type: ignore[assignment] # `+=` keeps `body` itself: see above
        elif type(pending) is bytes:
            cycle.body = bytearray(pending)  # a second chunk before the app asked: gather them
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_unread = False
        super().on_message_complete()

    def eof_received(self) -> None:
        if self._lingering is not None:
            self._lingering.end()
            return
        super().eof_received()

    def shutdown(self) -> None:
        if self._lingering is not None:
            self._lingering.end()
        super().shutdown()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._body_unread = True
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._lingering is not None:
            self._lingering.cancel_timers()
        super().connection_lost(exc)

    @property
    def header_timeout(self) -> float:
        return self._header_timeout

    @property
    def lingering(self) -> bool:
        return self._lingering is not None

    def close_transport(self, transport: asyncio.Transport) -> None:
        """Close at once, or linger if the client may still be sending a body."""
        if self._lingering is not None or transport.is_closing():
            return
        if not self._body_unread or not transport.can_write_eof():
            transport.close()
            return
        self._lingering = _Lingering(transport, self.loop)

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


class _Lingering:
    """Half-closed: the answer and a FIN are on their way; incoming bytes are dropped."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        transport.write_eof()
        transport.resume_reading()
        self._idle = loop.call_later(LINGER_IDLE_SECONDS, self.end)
        self._limit = loop.call_later(LINGER_MAX_SECONDS, self.end)
        self._loop = loop

    def discarded(self) -> None:
        self._idle.cancel()
        self._idle = self._loop.call_later(LINGER_IDLE_SECONDS, self.end)

    def end(self) -> None:
        self.cancel_timers()
        self._transport.close()

    def cancel_timers(self) -> None:
        self._idle.cancel()
        self._limit.cancel()


class _LingeringTransport:
    """The transport uvicorn's code holds: everything passes through but `close`."""

    def __init__(self, transport: asyncio.Transport, protocol: HeaderDeadlineProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_transport(self._transport)

    def is_closing(self) -> bool:
        return self._transport.is_closing() or self._protocol.lingering

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
