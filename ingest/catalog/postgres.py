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

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ingest.models import StoredFile

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

    async def add(self, stored_files: Sequence[StoredFile]) -> None:
        async with self._pool.connection() as connection, connection.transaction(), \
                connection.cursor() as cursor:
            await cursor.executemany(
                f"INSERT INTO files ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [_to_row(stored) for stored in stored_files])

    async def get(self, file_id: str) -> StoredFile | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM files WHERE id = %s", (file_id,))
        return _from_row(rows[0]) if rows else None

    async def page(self, *, limit: int, after: tuple[str, str] | None = None) -> list[StoredFile]:
        if after is None:
            rows = await self._fetch(
                f"SELECT {_COLUMNS} FROM files ORDER BY created_at DESC, id DESC LIMIT %s", (limit,))
        else:
            rows = await self._fetch(
                f"SELECT {_COLUMNS} FROM files WHERE (created_at, id) < (%s, %s) "
                "ORDER BY created_at DESC, id DESC LIMIT %s", (*after, limit))
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


def _to_row(stored: StoredFile) -> tuple[object, ...]:
    return (stored.id, stored.filename, stored.size, stored.sha256, stored.content_type,
            stored.created_at, Jsonb(stored.metadata), stored.detected_type, stored.link, stored.token)


def _from_row(row: tuple[Any, ...]) -> StoredFile:
    file_id, filename, size, sha256, content_type, created_at, metadata, detected, link, token = row
    return StoredFile(id=str(file_id), filename=str(filename), size=int(size), sha256=str(sha256),
                      content_type=str(content_type), created_at=str(created_at),
                      metadata=dict(metadata), detected_type=detected, link=link, token=token)
