"""RequestBody: the one reader of a request's body, and the one count of its bytes.

Every layer that cares about the body reads it here, or reads its count from here: the access
log (bytes in), live progress, the upload guard's deadlines, the size limit and the protocol
modules. So a body chunk costs one `read` and one addition, whatever is watching.

Deadlines (`bound`) are not a cancel scope around each wait for a chunk (which costs more than
the rest of a chunk's handling): the reader notes when it starts waiting, and one timer per
request, re-armed only when it fires, checks that note. If the client has sent nothing for
`idle_timeout` while the app waits for it, or the body's average rate fell below `min_rate`
once it has lasted `idle_timeout` (as Apache's mod_reqtimeout `MinRate`), the waiting task is
cancelled and the wait raises `RequestTimeout`, which the protocol modules handle like any
other failure (temporary files discarded, a JSON 408). Time the app spends on its own work
(a slow disk pushing back) is never counted as the client's idleness.
"""

from __future__ import annotations

import asyncio
import math
import time

from starlette.types import Message, Receive, Scope

from ingest.errors import ClientDisconnected, IngestError, RequestTimeout, RequestTooLarge

SCOPE_KEY = "ingest.body"  # ASGI scope key
SLOW_POLL_SECONDS = 0.05  # re-check interval while the rate is behind but the app is busy


class RequestBody:
    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.received = 0  # body bytes so far
        self.first_byte_at: float | None = None  # time.monotonic() of the first body byte
        self.ended = False
        self._limit: float = math.inf
        self._limit_message = ""
        # Deadlines, set by `bound`.
        self._idle_timeout = math.inf
        self._min_rate = 0
        self._started = 0.0
        self._waiting_since: float | None = None
        self._waiter: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out: IngestError | None = None

    @staticmethod
    def of(scope: Scope, receive: Receive) -> RequestBody:
        """The request's reader, made on first use (the outermost middleware makes it)."""
        body = scope.get(SCOPE_KEY)
        if body is None:
            body = scope[SCOPE_KEY] = RequestBody(receive)
        assert isinstance(body, RequestBody)
        return body

    def limit(self, max_bytes: int) -> None:
        """Refuse the body with 413 once it passes `max_bytes`."""
        self._limit = max_bytes
        self._limit_message = f"the body exceeds the limit of {max_bytes} bytes"
        if self.received > max_bytes:
            raise RequestTooLarge(self._limit_message)

    async def read(self) -> bytes:
        """The next non-empty chunk, b"" once the body has ended."""
        while not self.ended:
            message = await self.receive()
            if message["type"] != "http.request":
                raise ClientDisconnected("the client closed the connection before the body ended")
            chunk: bytes = message.get("body", b"")
            if chunk:
                return chunk
        return b""

    async def receive(self) -> Message:
        """ASGI `receive` for whatever reads the body through Starlette: counted and bounded."""
        if self._timer is not None:
            self._waiting_since = time.monotonic()
            try:
                message = await self._receive()
            except asyncio.CancelledError:
                self._waiting_since = None
                self._raise_timeout()
                raise
            self._waiting_since = None
        else:
            message = await self._receive()
        if message["type"] == "http.request":
            self.ended = not message.get("more_body", False)
            size = len(message.get("body", b""))
            if size:
                if not self.received:
                    self.first_byte_at = time.monotonic()
                self.received += size
                if self.received > self._limit:
                    raise RequestTooLarge(self._limit_message)
        else:
            self.ended = True
        return message

    # --- deadlines --------------------------------------------------------------------------

    def bound(self, *, idle_timeout: float, min_rate: int = 0) -> None:
        """Apply the idle timeout and minimum rate to every wait for this body from now on."""
        self._idle_timeout = idle_timeout or math.inf
        self._min_rate = min_rate
        self._started = time.monotonic()
        self._waiter = asyncio.current_task()  # the request's task, which reads its body
        if self._idle_timeout < math.inf:
            self._timer = asyncio.get_running_loop().call_later(self._idle_timeout, self._check)

    def unbind(self) -> None:
        """The request is over: stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline(self, now: float) -> float:
        waiting_since = self._waiting_since if self._waiting_since is not None else now
        deadline = waiting_since + self._idle_timeout
        if self._min_rate:
            # The moment the average would fall below min_rate if nothing more arrived.
            deadline = min(deadline, self._started + max(self._idle_timeout, self.received / self._min_rate))
        return deadline

    def _check(self) -> None:
        """The timer: time out a wait past its deadline, or re-arm for the next deadline."""
        now = time.monotonic()
        deadline = self._deadline(now)
        waiter = self._waiter
        if self._waiting_since is not None and now >= deadline and waiter is not None and not waiter.done():
            if deadline < self._waiting_since + self._idle_timeout:
                self._timed_out = RequestTimeout(
                    f"the request body arrived slower than {self._min_rate} bytes/s "
                    f"({self.received} bytes in {now - self._started:.0f} seconds)",
                    headers={"connection": "close"})
            else:
                self._timed_out = RequestTimeout(
                    f"the request body sent nothing for {self._idle_timeout:g} seconds",
                    headers={"connection": "close"})
            self._timer = None
            waiter.cancel()
            return
        self._timer = asyncio.get_running_loop().call_later(max(deadline - now, SLOW_POLL_SECONDS), self._check)

    def _raise_timeout(self) -> None:
        """In the cancelled wait: turn our own cancellation into the 408 it stands for."""
        error, self._timed_out = self._timed_out, None
        if error is not None and self._waiter is not None and self._waiter.uncancel() == 0:
            raise error
