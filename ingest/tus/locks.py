"""One writer per upload inside a process, and hand-over instead of lock-out.

A client whose connection dropped reconnects while the server may still be reading the old
PATCH (the dead socket is not noticed until a keep-alive or TCP timeout). Like tusd
(pkg/handler, "lock release requests"), the newcomer asks the current holder to stop; the
holder saves what it received and releases, and the newcomer proceeds. Across processes the
storage's own exclusive session (an flock for local disk) guards against corruption.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import anyio


@dataclass
class Holder:
    """The current holder of an upload; `body_scope` wraps its reading of the request body."""

    body_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    released: anyio.Event = field(default_factory=anyio.Event)

    @property
    def superseded(self) -> bool:
        return self.body_scope.cancel_called


class UploadLocks:
    def __init__(self) -> None:
        self._holders: dict[str, Holder] = {}

    @contextlib.asynccontextmanager
    async def hold(self, upload_id: str) -> AsyncIterator[Holder]:
        while (current := self._holders.get(upload_id)) is not None:
            # Stops only the body read; saving what arrived runs shielded in the holder.
            current.body_scope.cancel()
            await current.released.wait()
        holder = self._holders[upload_id] = Holder()
        try:
            yield holder
        finally:
            del self._holders[upload_id]
            holder.released.set()

    def busy(self, upload_id: str) -> bool:
        return upload_id in self._holders

    def ask_to_release(self, upload_id: str) -> None:
        """A request from another node (RemoteHandOver): stop this process's PATCH, if any."""
        current = self._holders.get(upload_id)
        if current is not None:
            current.body_scope.cancel()


class RemoteHandOver(Protocol):
    """Hand-over across nodes: ask whichever node holds an upload's session to release it
    (ingest.storage.session_locks.PostgresHandOver); every node feeds requests to `ask_to_release`."""

    async def request(self, upload_id: str) -> None:
        """Ask the node holding the upload's session to stop its PATCH and release it."""

    async def settle(self, upload_id: str, *, wait_seconds: float) -> None:
        """Make sure no other node is writing the upload: ask for a hand-over if one is, and
        wait (at most `wait_seconds`) until it has saved and released."""
