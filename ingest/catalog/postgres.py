"""PostgreSQL catalog (psycopg 3, async, pooled): one catalog shared by several ingest nodes.

Same rows and semantics as the SQLite catalog: a multi-row insert is one transaction, pages
are newest first with ties broken by id. Text columns that order pages use the "C" collation,
so cursors compare byte by byte exactly as in SQLite, whatever the database's locale.
The schema is created or migrated at start-up under an advisory lock, so nodes starting
together do not race each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio.to_thread
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ingest.catalog.base import link_from_row, links_usage
from ingest.errors import LinkRevoked
from ingest.models import Link, StoredFile

# Key of the advisory lock held while migrating (any constant unique to ingest).
_MIGRATION_LOCK = 0x696E6765_7374_0001

# Each entry moves the schema one version up; never edit one that has shipped, append.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE files (
        id           TEXT COLLATE "C" PRIMARY KEY,
        filename     TEXT NOT NULL,
        size         BIGINT NOT NULL,
        sha256       TEXT NOT NULL,
        content_type TEXT NOT NULL,
        created_at   TEXT COLLATE "C" NOT NULL,
        metadata     JSONB NOT NULL DEFAULT '{}'
    );
    CREATE INDEX files_newest ON files (created_at DESC, id DESC);
    """,
    """
    ALTER TABLE files ADD COLUMN detected_type TEXT,
                      ADD COLUMN link_id TEXT COLLATE "C",
                      ADD COLUMN token_name TEXT;
    CREATE INDEX files_by_link ON files (link_id, created_at DESC, id DESC);
    CREATE TABLE links (
        id          TEXT COLLATE "C" PRIMARY KEY,
        secret_hash TEXT NOT NULL UNIQUE,
        label       TEXT NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        expires_at  TEXT COLLATE "C",
        max_size    BIGINT,
        max_files   BIGINT,
        accept      JSONB NOT NULL,
        single_use  BOOLEAN NOT NULL,
        revoked_at  TEXT,
        bytes_used  BIGINT NOT NULL DEFAULT 0,
        files_used  BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE link_reservations (
        key        TEXT PRIMARY KEY,
        link_id    TEXT COLLATE "C" NOT NULL,
        bytes      BIGINT NOT NULL,
        files      BIGINT NOT NULL,
        expires_at TEXT COLLATE "C"
    );
    CREATE INDEX link_reservations_by_link ON link_reservations (link_id);
    """,
)
_COLUMNS = "id, filename, size, sha256, content_type, created_at, metadata, detected_type, link_id, token_name"


class PostgresCatalog:
    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        self.url = url
        self._pool = AsyncConnectionPool(url, min_size=1, max_size=max_connections, open=False)

    @property
    def pool(self) -> AsyncConnectionPool:
        return self._pool

    async def open(self) -> None:
        from ingest.backends import check_database

        # One plain connection first: a missing database or role fails here in one line,
        # not after the pool's 30 s of retries as `PoolTimeout`.
        await anyio.to_thread.run_sync(check_database, self.url)
        await self._pool.open(wait=True, timeout=30)
        await self._migrate()

    async def _migrate(self) -> None:
        async with self._pool.connection() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS ingest_schema (version INTEGER NOT NULL)")
            cursor = await connection.execute("SELECT version FROM ingest_schema")
            row = await cursor.fetchone()
            version = int(row[0]) if row else 0
            if row is None:
                await connection.execute("INSERT INTO ingest_schema (version) VALUES (0)")
            for number, migration in enumerate(_MIGRATIONS[version:], start=version + 1):
                await connection.execute(migration)
                await connection.execute("UPDATE ingest_schema SET version = %s", (number,))

    async def close(self) -> None:
        await self._pool.close()

    async def add(self, stored_files: Sequence[StoredFile], *, release: Sequence[str] = ()) -> None:
        usage = links_usage(stored_files)
        async with self._pool.connection() as connection, connection.transaction(), \
                connection.cursor() as cursor:
            await cursor.executemany(
                f"INSERT INTO files ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [_to_row(stored) for stored in stored_files])
            for link_id, (size, count) in usage.items():
                await cursor.execute("UPDATE links SET bytes_used = bytes_used + %s, files_used = files_used + %s "
                                     "WHERE id = %s", (size, count, link_id))
            if release:
                await cursor.execute("DELETE FROM link_reservations WHERE key = ANY(%s)", (list(release),))

    # --- upload links -------------------------------------------------------------------------

    async def add_link(self, link: Link, secret_hash: str) -> None:
        async with self._pool.connection() as connection:
            await connection.execute(
                f"INSERT INTO links ({_LINK_COLUMNS}, secret_hash) VALUES ({', '.join(['%s'] * 12)})",
                (*_link_row(link), secret_hash))

    async def find_link(self, secret_hash: str, now: str) -> Link | None:
        async with self._pool.connection() as connection:
            return await _select_link(connection, "secret_hash = %s", secret_hash, now)

    async def get_link(self, link_id: str, now: str) -> Link | None:
        async with self._pool.connection() as connection:
            return await _select_link(connection, "id = %s", link_id, now)

    async def links(self, now: str) -> list[Link]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute("SELECT id FROM links ORDER BY created_at DESC, id")
            found = [await _select_link(connection, "id = %s", row[0], now) for row in await cursor.fetchall()]
            return [link for link in found if link is not None]

    async def revoke_link(self, link_id: str, now: str) -> Link | None:
        async with self._pool.connection() as connection, connection.transaction():
            await connection.execute("UPDATE links SET revoked_at = COALESCE(revoked_at, %s) WHERE id = %s",
                                     (now, link_id))
            return await _select_link(connection, "id = %s", link_id, now)

    async def reserve(self, link_id: str, key: str, *, size: int | None, exact: bool, files: int,
                      now: str, hold_until: str | None) -> int:
        async with self._pool.connection() as connection, connection.transaction():
            # The link's row lock orders every reservation of one link, across nodes.
            link = await _select_link(connection, "id = %s", link_id, now, lock=True)
            if link is None:
                raise LinkRevoked(f"upload link {link_id} no longer exists")
            # Reservations of crashed requests that lapsed count for nothing: drop them.
            await connection.execute("DELETE FROM link_reservations WHERE link_id = %s AND expires_at <= %s",
                                     (link_id, now))
            cursor = await connection.execute("SELECT 1 FROM link_reservations WHERE key = %s", (key,))
            holding = await cursor.fetchone() is not None
            granted = link.grant(size=size, exact=exact, files=files, holding=holding, now=now)
            await connection.execute(
                "INSERT INTO link_reservations (key, link_id, bytes, files, expires_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET bytes = link_reservations.bytes + excluded.bytes, "
                "files = link_reservations.files + excluded.files", (key, link_id, granted, files, hold_until))
            return granted

    async def release(self, keys: Sequence[str]) -> None:
        async with self._pool.connection() as connection:
            await connection.execute("DELETE FROM link_reservations WHERE key = ANY(%s)", (list(keys),))

    async def get(self, file_id: str) -> StoredFile | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM files WHERE id = %s", (file_id,))
        return _from_row(rows[0]) if rows else None

    async def page(self, *, limit: int, after: tuple[str, str] | None = None,
                   link: str | None = None) -> list[StoredFile]:
        conditions: list[str] = []
        params: list[Any] = []
        if after is not None:
            conditions.append("(created_at, id) < (%s, %s)")
            params += list(after)
        if link is not None:
            conditions.append("link_id = %s")
            params.append(link)
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM files {where}ORDER BY created_at DESC, id DESC LIMIT %s", (*params, limit))
        return [_from_row(row) for row in rows]

    async def remove(self, file_id: str) -> StoredFile | None:
        rows = await self._fetch(f"DELETE FROM files WHERE id = %s RETURNING {_COLUMNS}", (file_id,))
        return _from_row(rows[0]) if rows else None

    async def file_ids(self) -> set[str]:
        return {str(row[0]) for row in await self._fetch("SELECT id FROM files", ())}

    async def _fetch(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(query.encode(), params)
            return list(await cursor.fetchall())


_LINK_COLUMNS = ("id, label, created_at, expires_at, max_size, max_files, accept, single_use, revoked_at, "
                 "bytes_used, files_used")


async def _select_link(connection: Any, where: str, value: str, now: str, *, lock: bool = False) -> Link | None:
    cursor = await connection.execute(
        f"SELECT {_LINK_COLUMNS} FROM links WHERE {where}{' FOR UPDATE' if lock else ''}", (value,))
    row = await cursor.fetchone()
    if row is None:
        return None
    cursor = await connection.execute(
        "SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(files), 0), COUNT(*) FROM link_reservations "
        "WHERE link_id = %s AND (expires_at IS NULL OR expires_at > %s)", (row[0], now))
    return link_from_row((*row, *(await cursor.fetchone())))


def _link_row(link: Link) -> tuple[object, ...]:
    return (link.id, link.label, link.created_at, link.expires_at, link.max_size, link.max_files,
            Jsonb(list(link.accept)), link.single_use, link.revoked_at, link.bytes_used, link.files_used)


def _to_row(stored: StoredFile) -> tuple[object, ...]:
    return (stored.id, stored.filename, stored.size, stored.sha256, stored.content_type,
            stored.created_at, Jsonb(stored.metadata), stored.detected_type, stored.link, stored.token)


def _from_row(row: tuple[Any, ...]) -> StoredFile:
    file_id, filename, size, sha256, content_type, created_at, metadata, detected, link, token = row
    return StoredFile(id=str(file_id), filename=str(filename), size=int(size), sha256=str(sha256),
                      content_type=str(content_type), created_at=str(created_at),
                      metadata=dict(metadata), detected_type=detected, link=link, token=token)
