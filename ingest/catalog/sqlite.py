"""SQLite catalog (stdlib `sqlite3`, WAL): the embedded default.

Queries run in a worker thread so that a commit's fsync never stalls the event loop; one
connection per process, serialised by a lock (SQLite allows one writer anyway, and WAL lets
several worker processes read while one writes).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from ingest.models import StoredFile

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id           TEXT PRIMARY KEY,
    filename     TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    metadata     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS files_newest ON files (created_at DESC, id DESC);
"""
# Each entry moves the schema one version up (PRAGMA user_version); never edit one that has
# shipped, append. Catalogs made before versioning are at version 0 with the table above.
_MIGRATIONS: tuple[str, ...] = (
    """
    ALTER TABLE files ADD COLUMN detected_type TEXT;
    ALTER TABLE files ADD COLUMN link_id TEXT;
    ALTER TABLE files ADD COLUMN token_name TEXT;
    CREATE INDEX files_by_link ON files (link_id, created_at DESC, id DESC);
    """,
)
_COLUMNS = "id, filename, size, sha256, content_type, created_at, metadata, detected_type, link_id, token_name"


class SqliteCatalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                                     isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(_SCHEMA)
        _migrate(connection)
        self._connection = connection

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await anyio.to_thread.run_sync(connection.close)

    async def _run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            assert self._connection is not None, "catalog is not open"
            with self._lock:
                return query(self._connection)

        return await anyio.to_thread.run_sync(locked)

    async def add(self, stored_files: Sequence[StoredFile]) -> None:
        rows = [_to_row(f) for f in stored_files]

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(f"INSERT INTO files ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

        await self._run(insert)

    async def get(self, file_id: str) -> StoredFile | None:
        def select(connection: sqlite3.Connection) -> StoredFile | None:
            row = connection.execute(f"SELECT {_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone()
            return _from_row(row) if row else None

        return await self._run(select)

    async def page(self, *, limit: int, after: tuple[str, str] | None = None) -> list[StoredFile]:
        def select(connection: sqlite3.Connection) -> list[StoredFile]:
            if after is None:
                cursor = connection.execute(
                    f"SELECT {_COLUMNS} FROM files ORDER BY created_at DESC, id DESC LIMIT ?", (limit,))
            else:
                cursor = connection.execute(
                    f"SELECT {_COLUMNS} FROM files WHERE (created_at, id) < (?, ?) "
                    "ORDER BY created_at DESC, id DESC LIMIT ?", (*after, limit))
            return [_from_row(row) for row in cursor.fetchall()]

        return await self._run(select)

    async def remove(self, file_id: str) -> StoredFile | None:
        def delete(connection: sqlite3.Connection) -> StoredFile | None:
            row = connection.execute(
                f"DELETE FROM files WHERE id = ? RETURNING {_COLUMNS}", (file_id,)).fetchone()
            return _from_row(row) if row else None

        return await self._run(delete)

    async def file_ids(self) -> set[str]:
        return await self._run(lambda c: {row[0] for row in c.execute("SELECT id FROM files")})


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring the schema up to date in one write transaction, so that worker processes
    starting together migrate once (the second sees the new version and does nothing)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        for number, migration in enumerate(_MIGRATIONS[version:], start=version + 1):
            for statement in migration.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _to_row(stored: StoredFile) -> tuple[object, ...]:
    return (stored.id, stored.filename, stored.size, stored.sha256, stored.content_type,
            stored.created_at, json.dumps(stored.metadata, separators=(",", ":")),
            stored.detected_type, stored.link, stored.token)


def _from_row(row: tuple[object, ...]) -> StoredFile:
    file_id, filename, size, sha256, content_type, created_at, metadata, detected, link, token = row
    return StoredFile(id=str(file_id), filename=str(filename), size=int(str(size)),
                      sha256=str(sha256), content_type=str(content_type),
                      created_at=str(created_at), metadata=json.loads(str(metadata)),
                      detected_type=None if detected is None else str(detected),
                      link=None if link is None else str(link),
                      token=None if token is None else str(token))
