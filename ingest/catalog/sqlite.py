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

from ingest.catalog.base import link_from_row, links_usage
from ingest.errors import LinkRevoked
from ingest.models import Link, StoredFile

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
    CREATE TABLE links (
        id          TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL UNIQUE,
        label       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        expires_at  TEXT,
        max_size    INTEGER,
        max_files   INTEGER,
        accept      TEXT NOT NULL,
        single_use  INTEGER NOT NULL,
        revoked_at  TEXT,
        bytes_used  INTEGER NOT NULL DEFAULT 0,
        files_used  INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE link_reservations (
        key        TEXT PRIMARY KEY,
        link_id    TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        files      INTEGER NOT NULL,
        expires_at TEXT
    );
    CREATE INDEX link_reservations_by_link ON link_reservations (link_id);
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

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one write transaction (BEGIN IMMEDIATE: writers queue, readers go on)."""
        def run(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

        return await self._run(run)

    async def add(self, stored_files: Sequence[StoredFile], *, release: Sequence[str] = ()) -> None:
        rows = [_to_row(f) for f in stored_files]
        usage = links_usage(stored_files)

        def insert(connection: sqlite3.Connection) -> None:
            connection.executemany(f"INSERT INTO files ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            connection.executemany("UPDATE links SET bytes_used = bytes_used + ?, files_used = files_used + ? "
                                   "WHERE id = ?", [(size, count, link_id) for link_id, (size, count) in usage.items()])
            connection.executemany("DELETE FROM link_reservations WHERE key = ?", [(key,) for key in release])

        await self._transaction(insert)

    # --- upload links -------------------------------------------------------------------------

    async def add_link(self, link: Link, secret_hash: str) -> None:
        await self._transaction(lambda c: c.execute(
            f"INSERT INTO links ({_LINK_COLUMNS}, secret_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (*_link_row(link), secret_hash)))

    async def find_link(self, secret_hash: str, now: str) -> Link | None:
        return await self._run(lambda c: _select_link(c, "secret_hash = ?", secret_hash, now))

    async def get_link(self, link_id: str, now: str) -> Link | None:
        return await self._run(lambda c: _select_link(c, "id = ?", link_id, now))

    async def links(self, now: str) -> list[Link]:
        def select(connection: sqlite3.Connection) -> list[Link]:
            ids = [row[0] for row in connection.execute("SELECT id FROM links ORDER BY created_at DESC, id")]
            return [link for i in ids if (link := _select_link(connection, "id = ?", i, now))]

        return await self._run(select)

    async def revoke_link(self, link_id: str, now: str) -> Link | None:
        def revoke(connection: sqlite3.Connection) -> Link | None:
            connection.execute("UPDATE links SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (now, link_id))
            return _select_link(connection, "id = ?", link_id, now)

        return await self._transaction(revoke)

    async def reserve(self, link_id: str, key: str, *, size: int | None, exact: bool, files: int,
                      now: str, hold_until: str | None) -> int:
        def reserve(connection: sqlite3.Connection) -> int:
            # Reservations of crashed requests that lapsed count for nothing: drop them.
            connection.execute("DELETE FROM link_reservations WHERE link_id = ? AND expires_at <= ?", (link_id, now))
            link = _select_link(connection, "id = ?", link_id, now)
            if link is None:
                raise LinkRevoked(f"upload link {link_id} no longer exists")
            holding = connection.execute("SELECT 1 FROM link_reservations WHERE key = ?", (key,)).fetchone()
            granted = link.grant(size=size, exact=exact, files=files, holding=holding is not None, now=now)
            connection.execute(
                "INSERT INTO link_reservations (key, link_id, bytes, files, expires_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (key) DO UPDATE SET bytes = bytes + excluded.bytes, files = files + excluded.files",
                (key, link_id, granted, files, hold_until))
            return granted

        return await self._transaction(reserve)

    async def release(self, keys: Sequence[str]) -> None:
        await self._transaction(lambda c: c.executemany(
            "DELETE FROM link_reservations WHERE key = ?", [(key,) for key in keys]))

    async def get(self, file_id: str) -> StoredFile | None:
        def select(connection: sqlite3.Connection) -> StoredFile | None:
            row = connection.execute(f"SELECT {_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone()
            return _from_row(row) if row else None

        return await self._run(select)

    async def page(self, *, limit: int, after: tuple[str, str] | None = None,
                   link: str | None = None) -> list[StoredFile]:
        conditions, params = [], []
        if after is not None:
            conditions.append("(created_at, id) < (?, ?)")
            params += list(after)
        if link is not None:
            conditions.append("link_id = ?")
            params.append(link)
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""

        def select(connection: sqlite3.Connection) -> list[StoredFile]:
            cursor = connection.execute(
                f"SELECT {_COLUMNS} FROM files {where}ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit))
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


_LINK_COLUMNS = ("id, label, created_at, expires_at, max_size, max_files, accept, single_use, revoked_at, "
                 "bytes_used, files_used")


def _select_link(connection: sqlite3.Connection, where: str, value: str, now: str) -> Link | None:
    row = connection.execute(f"SELECT {_LINK_COLUMNS} FROM links WHERE {where}", (value,)).fetchone()
    if row is None:
        return None
    held = connection.execute(
        "SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(files), 0), COUNT(*) FROM link_reservations "
        "WHERE link_id = ? AND (expires_at IS NULL OR expires_at > ?)", (row[0], now)).fetchone()
    return link_from_row((*row, *held))


def _link_row(link: Link) -> tuple[object, ...]:
    return (link.id, link.label, link.created_at, link.expires_at, link.max_size, link.max_files,
            json.dumps(list(link.accept)), int(link.single_use), link.revoked_at, link.bytes_used,
            link.files_used)


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
