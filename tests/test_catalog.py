"""Catalogs (SQLite and PostgreSQL, same tests): rows, pagination, atomic multi-row insert."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psycopg
import pytest

from ingest.catalog import postgres as postgres_catalog
from ingest.catalog import sqlite as sqlite_catalog
from ingest.catalog.base import Catalog
from ingest.catalog.postgres import PostgresCatalog
from ingest.catalog.sqlite import SqliteCatalog
from ingest.models import StoredFile

pytestmark = pytest.mark.anyio


def row(n: int, created_at: str = "2026-01-01T00:00:00.000000Z") -> StoredFile:
    return StoredFile(id=f"{n:032x}", filename=f"{n}.bin", size=n, sha256="0" * 64,
                      content_type="application/octet-stream", created_at=created_at,
                      metadata={"n": n, "nested": {"ünï": [1, 2]}})


@pytest.fixture(params=["sqlite", "postgres"])
async def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Catalog]:
    opened: Catalog
    if request.param == "sqlite":
        opened = SqliteCatalog(tmp_path / "c.sqlite3")
    else:
        opened = PostgresCatalog(request.getfixturevalue("postgres_url"))
    await opened.open()
    yield opened
    await opened.close()


async def test_catalog_round_trips_rows(catalog: Catalog) -> None:
    await catalog.add([row(1), row(2)])
    assert await catalog.get(row(1).id) == row(1)
    assert await catalog.get("missing") is None
    assert await catalog.file_ids() == {row(1).id, row(2).id}
    assert await catalog.remove(row(1).id) == row(1)
    assert await catalog.remove(row(1).id) is None


async def test_pages_are_newest_first_and_ties_break_by_id(catalog: Catalog) -> None:
    await catalog.add([row(n, created_at=f"2026-01-0{1 + n // 2}T00:00:00.000000Z") for n in range(6)])
    seen: list[str] = []
    after = None
    while page := await catalog.page(limit=4, after=after):
        seen += [stored.id for stored in page]
        after = (page[-1].created_at, page[-1].id)
    assert seen == [row(n).id for n in (5, 4, 3, 2, 1, 0)]


async def test_a_failing_insert_adds_no_row_at_all(catalog: Catalog) -> None:
    await catalog.add([row(1)])
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        await catalog.add([row(2), row(1)])  # the duplicate fails after row 2 went in
    assert await catalog.file_ids() == {row(1).id}


async def test_catalog_uses_wal_so_workers_can_read_while_one_writes(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    await catalog.open()
    with sqlite3.connect(tmp_path / "c.sqlite3") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    await catalog.close()


async def test_postgres_schema_is_migrated_once_by_nodes_starting_together(postgres_url: str) -> None:
    nodes = [PostgresCatalog(postgres_url) for _ in range(3)]
    async with anyio.create_task_group() as group:
        for node in nodes:
            group.start_soon(node.open)
    await nodes[0].add([row(1)])
    assert await nodes[2].get(row(1).id) == row(1)  # one shared catalog
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT version FROM ingest_schema").fetchall() == [
            (len(postgres_catalog._MIGRATIONS),)]
    for node in nodes:
        await node.close()



async def test_files_record_detected_type_link_and_token(catalog: Catalog) -> None:
    stored = StoredFile(id="a" * 32, filename="x.png", size=1, sha256="0" * 64, content_type="image/png",
                        created_at="2026-01-01T00:00:00.000000Z", detected_type="image/png",
                        link="l" * 16, token="producer")
    await catalog.add([stored])
    assert await catalog.get(stored.id) == stored


async def test_a_sqlite_catalog_from_before_versioning_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.executescript(sqlite_catalog._SCHEMA)
        connection.execute("INSERT INTO files VALUES (?,?,?,?,?,?,?)",
                           ("b" * 32, "old.bin", 3, "0" * 64, "application/octet-stream",
                            "2026-01-01T00:00:00.000000Z", "{}"))
    for _ in range(2):  # a second start finds nothing to do
        catalog = SqliteCatalog(path)
        await catalog.open()
        old = await catalog.get("b" * 32)
        assert old is not None and old.detected_type is None and old.link is None
        await catalog.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_catalog._MIGRATIONS)


async def test_a_postgres_catalog_at_schema_version_1_is_migrated_and_keeps_its_rows(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE ingest_schema (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO ingest_schema VALUES (1)")
        connection.execute(postgres_catalog._MIGRATIONS[0])
        connection.execute("INSERT INTO files VALUES (%s,%s,%s,%s,%s,%s,'{}')",
                           ("c" * 32, "old.bin", 3, "0" * 64, "application/octet-stream",
                            "2026-01-01T00:00:00.000000Z"))
    catalog = PostgresCatalog(postgres_url)
    await catalog.open()
    old = await catalog.get("c" * 32)
    assert old is not None and old.detected_type is None and old.token is None
    await catalog.close()
