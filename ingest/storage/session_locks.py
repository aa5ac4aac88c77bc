"""Exclusive writing sessions on resumable uploads, across processes and nodes.

`PostgresSessionLocks`: PostgreSQL session-level advisory locks (pg_try_advisory_lock), one
pooled connection per held lock. Every node sharing the catalog sees them, and a node that
dies releases its locks with its connections — no lease to expire, no stale lock.
`FileSessionLocks`: flock on files in the data dir, for one host (several worker processes).
https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

# psycopg is imported where a PostgreSQL class is used, not here: a server on the embedded
# defaults (SQLite, flock) never loads it (about 10 MiB of resident memory per worker).

_NAMESPACE = b"ingest.partial:"


def lock_key(name: str) -> int:
    """A lock name as the signed 64-bit key PostgreSQL's advisory locks take."""
    return int.from_bytes(hashlib.sha256(_NAMESPACE + name.encode()).digest()[:8], "big", signed=True)


class PostgresSessionLocks:
    def __init__(self, url: str, *, max_sessions: int = 64) -> None:
        from psycopg_pool import ConnectionPool

        self._pool: ConnectionPool = ConnectionPool(url, min_size=1, max_size=max_sessions, open=True,
                                    kwargs={"autocommit": True})

    def try_lock(self, name: str) -> Callable[[], None] | None:
        key = lock_key(name)
        connection = self._pool.getconn()
        try:
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        except BaseException:
            self._pool.putconn(connection)
            raise
        if not (row and row[0]):
            self._pool.putconn(connection)
            return None

        def release() -> None:
            try:
                connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
            finally:
                self._pool.putconn(connection)

        return release

    def close(self) -> None:
        self._pool.close()


class FileSessionLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def try_lock(self, name: str) -> Callable[[], None] | None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f"{lock_key(name):x}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return lambda: os.close(fd)  # closing the descriptor releases the flock

    def close(self) -> None:
        pass


class PostgresHandOver:
    """Asks whichever node holds an upload's session to stop and save (tus hand-over across
    nodes), over PostgreSQL LISTEN/NOTIFY: a node that finds the session busy elsewhere
    notifies the channel with the upload id; every node listens and stops its own PATCH of
    that upload, which saves what it received and releases the lock.
    https://www.postgresql.org/docs/current/sql-notify.html
    """

    CHANNEL = "ingest_partial_handover"

    def __init__(self, url: str, locks: PostgresSessionLocks) -> None:
        self.url = url
        self._locks = locks

    async def settle(self, name: str, *, wait_seconds: float) -> None:
        deadline = anyio.current_time() + wait_seconds
        asked = False
        while (release := await anyio.to_thread.run_sync(self._locks.try_lock, name)) is None:
            if anyio.current_time() >= deadline:
                return  # still busy: the caller reports what is stored now
            if not asked:
                await self.request(name)
                asked = True
            await anyio.sleep(0.1)
        await anyio.to_thread.run_sync(release)

    async def request(self, name: str) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as connection:
            await connection.execute("SELECT pg_notify(%s, %s)", (self.CHANNEL, name))

    async def listen(self, on_request: Callable[[str], None]) -> None:
        """Call `on_request(name)` for every request, until cancelled; reconnects on failure."""
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as connection:
                    await connection.execute(f"LISTEN {self.CHANNEL}")
                    async for notice in connection.notifies():
                        on_request(notice.payload)
            except psycopg.OperationalError:
                await anyio.sleep(1)
