"""Upload links in process: each limit and state (fresh, used up, expired, revoked), concurrent
uploads racing for the last bytes, tus uploads holding their share, and the catalog's atomic
reservations on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ingest.catalog.base import Catalog
from ingest.catalog.postgres import PostgresCatalog
from ingest.catalog.sqlite import SqliteCatalog
from ingest.config import Settings
from ingest.errors import IngestError
from ingest.models import Link, utc_now
from tests.conftest import MULTIPART, app_client, file_part, multipart_body, stored_files, temp_files

pytestmark = pytest.mark.anyio
ROOT = {"authorization": "Bearer root"}
TUS = {"tus-resumable": "1.0.0"}
PATCH = {**TUS, "content-type": "application/offset+octet-stream"}


@pytest.fixture
def linked(settings: Settings) -> Settings:
    return settings.replace(tokens=("admin:root:admin", "reader:rd:read"))


@pytest.fixture
async def client(linked: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(linked) as client:
        yield client


async def make_link(client: httpx.AsyncClient, **options: Any) -> tuple[str, dict[str, str]]:
    response = await client.post("/links", headers=ROOT, json=options)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["url"].endswith(f"/l/{created['secret']}")
    return created["link"]["id"], {"authorization": f"Bearer {created['secret']}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert (response.status_code, response.json()["error"]) == (status, code), response.text


def set_link(settings: Settings, link_id: str, **columns: object) -> None:
    with sqlite3.connect(settings.catalog_path) as connection:
        for column, value in columns.items():
            connection.execute(f"UPDATE links SET {column} = ? WHERE id = ?", (value, link_id))


async def test_a_fresh_link_uploads_and_its_files_record_it(client: httpx.AsyncClient, linked: Settings) -> None:
    link_id, link = await make_link(client, label="from Ana")
    raw = await client.put("/uploads/a.txt", content=b"abc", headers=link)
    form = await client.post("/uploads", headers={**link, **MULTIPART},
                             content=multipart_body([file_part("f", "b.txt", b"de")]))
    assert raw.status_code == form.status_code == 201
    assert raw.json()["files"][0]["link"] == link_id
    await client.put("/uploads/other.txt", content=b"x", headers=ROOT)
    listed = (await client.get("/uploads", params={"link": link_id}, headers={"authorization": "Bearer rd"})).json()
    assert sorted(item["filename"] for item in listed["items"]) == ["a.txt", "b.txt"]
    current = (await client.get("/links/current", headers=link)).json()
    assert (current["label"], current["files_used"], current["bytes_used"], current["state"]) == (
        "from Ana", 2, 5, "active")
    assert "secret" not in str((await client.get("/links", headers=ROOT)).json())
    with sqlite3.connect(linked.catalog_path) as connection:  # only the hash is kept
        assert link["authorization"].split()[1] not in str(connection.execute("SELECT * FROM links").fetchall())


async def test_max_files_is_a_limit_over_every_upload(client: httpx.AsyncClient, linked: Settings) -> None:
    _, link = await make_link(client, max_files=2)
    for name in ("1.txt", "2.txt"):
        assert (await client.put(f"/uploads/{name}", content=b"x", headers=link)).status_code == 201
    assert_error(await client.put("/uploads/3.txt", content=b"x", headers=link), 403, "link_used_up")
    three = multipart_body([file_part("f", f"{n}.txt", b"x") for n in range(3)])
    _, other = await make_link(client, max_files=2)
    assert_error(await client.post("/uploads", headers={**other, **MULTIPART}, content=three), 403, "link_used_up")
    assert len(stored_files(linked.data_dir)) == 2 and temp_files(linked.data_dir) == []
    assert (await client.get("/links/current", headers=other)).json()["files_left"] == 2  # given back


async def test_max_size_refuses_a_body_that_cannot_fit_before_reading_it(client: httpx.AsyncClient) -> None:
    _, link = await make_link(client, max_size="1KiB")
    assert (await client.put("/uploads/a.bin", content=b"x" * 600, headers=link)).status_code == 201
    assert_error(await client.put("/uploads/b.bin", content=b"x" * 600, headers=link), 413, "link_limit_exceeded")

    async def chunked() -> AsyncIterator[bytes]:  # no length: it may use what is left, no more
        for _ in range(6):
            yield b"y" * 100

    assert_error(await client.put("/uploads/c.bin", content=chunked(), headers=link), 413, "file_too_large")
    assert (await client.put("/uploads/d.bin", content=b"z" * 424, headers=link)).status_code == 201
    assert (await client.get("/links/current", headers=link)).json()["state"] == "used_up"


async def test_a_single_use_link_takes_one_upload(client: httpx.AsyncClient) -> None:
    _, link = await make_link(client, single_use=True)
    two = multipart_body([file_part("f", "a.txt", b"a"), file_part("f", "b.txt", b"b")])
    assert (await client.post("/uploads", headers={**link, **MULTIPART}, content=two)).status_code == 201
    assert_error(await client.put("/uploads/c.txt", content=b"c", headers=link), 403, "link_used_up")


async def test_an_expired_link_gets_401_and_a_revoked_one_403(client: httpx.AsyncClient, linked: Settings) -> None:
    expired_id, expired = await make_link(client, expires="7d")
    set_link(linked, expired_id, expires_at="2000-01-01T00:00:00.000000Z")
    assert_error(await client.put("/uploads/a.txt", content=b"a", headers=expired), 401, "link_expired")
    assert_error(await client.post("/files/", headers={**expired, **TUS, "upload-length": "1"}), 401, "link_expired")
    revoked_id, revoked = await make_link(client)
    assert (await client.delete(f"/links/{revoked_id}", headers=ROOT)).json()["state"] == "revoked"
    assert_error(await client.put("/uploads/a.txt", content=b"a", headers=revoked), 403, "link_revoked")
    assert_error(await client.get("/links/current", headers=revoked), 403, "link_revoked")
    states = {item["id"]: item["state"] for item in (await client.get("/links", headers=ROOT)).json()["items"]}
    assert (states[expired_id], states[revoked_id]) == ("expired", "revoked")


async def test_concurrent_uploads_racing_for_the_last_bytes_cannot_pass_max_size(
        client: httpx.AsyncClient, linked: Settings) -> None:
    _, link = await make_link(client, max_size=1000)
    answers: list[httpx.Response] = []

    async def put(name: str) -> None:
        answers.append(await client.put(f"/uploads/{name}", content=b"r" * 600, headers=link))

    async with anyio.create_task_group() as group:  # all at once: one wins the reservation
        for name in ("one.bin", "two.bin", "three.bin"):
            group.start_soon(put, name)
    assert sorted(a.status_code for a in answers) == [201, 413, 413], [a.text for a in answers]
    assert len(stored_files(linked.data_dir)) == 1


async def test_an_upload_in_flight_holds_its_bytes_until_it_ends(client: httpx.AsyncClient) -> None:
    _, link = await make_link(client, max_size=1000)
    in_flight, others_answered = anyio.Event(), anyio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"a" * 100
        in_flight.set()
        with anyio.fail_after(10):
            await others_answered.wait()
        yield b"a" * 500

    async def first() -> None:
        response = await client.put("/uploads/first.bin", content=slow_body(),
                                    headers={**link, "content-length": "600"})
        assert response.status_code == 201

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await in_flight.wait()
        assert_error(await client.put("/uploads/b.bin", content=b"b" * 401, headers=link), 413, "link_limit_exceeded")
        assert (await client.put("/uploads/c.bin", content=b"c" * 400, headers=link)).status_code == 201
        others_answered.set()
    assert (await client.get("/links/current", headers=link)).json()["bytes_left"] == 0


async def test_a_tus_upload_in_progress_holds_its_bytes_and_releases_them_when_terminated(
        client: httpx.AsyncClient) -> None:
    _, link = await make_link(client, max_size=1000)
    created = await client.post("/files/", headers={**link, **TUS, "upload-length": "600"})
    assert created.status_code == 201
    assert (await client.patch(created.headers["location"], content=b"t" * 100,
                               headers={**link, **PATCH, "upload-offset": "0"})).status_code == 204
    assert_error(await client.put("/uploads/a.bin", content=b"x" * 600, headers=link), 413, "link_limit_exceeded")
    assert (await client.get("/links/current", headers=link)).json()["bytes_left"] == 400
    assert (await client.delete(created.headers["location"], headers={**link, **TUS})).status_code == 204
    assert (await client.put("/uploads/a.bin", content=b"x" * 600, headers=link)).status_code == 201


async def test_a_tus_upload_started_before_its_link_expired_may_finish(
        client: httpx.AsyncClient, linked: Settings) -> None:
    link_id, link = await make_link(client, expires="1h")
    created = await client.post("/files/", headers={**link, **TUS, "upload-length": "10"})
    location = created.headers["location"]
    assert (await client.patch(location, content=b"01234", headers={**link, **PATCH, "upload-offset": "0"})
            ).status_code == 204
    set_link(linked, link_id, expires_at="2000-01-01T00:00:00.000000Z")
    assert (await client.head(location, headers={**link, **TUS})).headers["upload-offset"] == "5"
    done = await client.patch(location, content=b"56789", headers={**link, **PATCH, "upload-offset": "5"})
    assert done.status_code == 204, done.text
    stored = (await client.get(f"/uploads/{done.headers['ingest-file-id']}", headers=ROOT)).json()
    assert (stored["size"], stored["link"]) == (10, link_id)
    assert_error(await client.post("/files/", headers={**link, **TUS, "upload-length": "1"}), 401, "link_expired")


async def test_a_link_reaches_only_its_own_tus_uploads(client: httpx.AsyncClient) -> None:
    _, first = await make_link(client)
    _, second = await make_link(client)
    created = await client.post("/files/", headers={**first, **TUS, "upload-length": "3"})
    assert (await client.head(created.headers["location"], headers={**second, **TUS})).status_code == 403
    assert_error(await client.patch(created.headers["location"], content=b"abc",
                                    headers={**second, **PATCH, "upload-offset": "0"}), 403, "forbidden")
    assert_error(await client.post("/files/", headers={**first, **TUS, "upload-concat": "partial",
                                                       "upload-length": "3"}), 403, "forbidden")


async def test_a_links_accept_list_applies_on_top_of_the_servers(client: httpx.AsyncClient) -> None:
    _, link = await make_link(client, accept="image/*")
    assert_error(await client.put("/uploads/a.txt", content=b"plain words\n" * 20, headers=link),
                 415, "unsupported_file_type")
    assert (await client.put("/uploads/a.txt", content=b"plain words\n" * 20, headers=ROOT)).status_code == 201
    assert (await client.get("/links/current", headers=link)).json()["files_left"] is None


async def test_links_survive_a_restart_and_open_the_page(linked: Settings) -> None:
    async with app_client(linked) as client:
        _, link = await make_link(client, max_files=1)
    async with app_client(linked) as client:
        assert (await client.put("/uploads/a.txt", content=b"a", headers=link)).status_code == 201
        secret = link["authorization"].split()[1]
        opened = await client.get(f"/l/{secret}", follow_redirects=False)
        assert (opened.status_code, opened.headers["location"]) == (303, f"../?link={secret}")


async def test_bad_link_options_are_a_400(client: httpx.AsyncClient) -> None:
    for options in ({"expires": "soon"}, {"max_size": "lots"}, {"max_files": 0}, {"accept": "png"},
                    {"colour": "red"}, {"accept": True}, {"single_use": 4.2e239}, {"expires": 1e300},
                    {"max_size": [1]}, {"label": 7}, {"max_files": True}, {"expires": -1},
                    {"max_size": 10**30}, {"max_files": 2**70}, {"max_size": "1e300GiB"}, {"max_size": "1e999"}):
        assert_error(await client.post("/links", headers=ROOT, json=options), 400, "invalid_request")


# --- the catalog's reservations, on both backends ------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
async def catalogs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Catalog]]:
    """Two catalog connections to one store: two nodes."""
    nodes: list[Catalog]
    if request.param == "sqlite":
        nodes = [SqliteCatalog(tmp_path / "c.sqlite3") for _ in range(2)]
    else:
        url = request.getfixturevalue("postgres_url")
        nodes = [PostgresCatalog(url) for _ in range(2)]
    for node in nodes:
        await node.open()
    yield nodes
    for node in nodes:
        await node.close()


async def test_reservations_from_two_nodes_never_pass_the_links_limits(catalogs: list[Catalog]) -> None:
    link = Link(id="l1", created_at=utc_now(), max_size=10_000, max_files=30)
    await catalogs[0].add_link(link, "hash")
    granted: list[int] = []
    holders: list[str] = []
    refused: list[str] = []

    async def reserve(node: Catalog, key: str) -> None:
        try:
            granted.append(await node.reserve("l1", key, size=700, exact=True, files=1, now=utc_now(),
                                              hold_until=None))
            holders.append(key)
        except IngestError as error:
            refused.append(error.code)

    async with anyio.create_task_group() as group:
        for n in range(40):
            group.start_soon(reserve, catalogs[n % 2], f"k{n}")
    assert sum(granted) <= 10_000 and len(granted) == 14
    assert set(refused) == {"link_limit_exceeded"}
    found = await catalogs[1].find_link("hash", utc_now())
    assert found is not None and (found.bytes_reserved, found.uploads_in_flight) == (9800, 14)
    await catalogs[1].release(holders[:2])
    found = await catalogs[0].get_link("l1", utc_now())
    assert found is not None and found.bytes_left() == 1600


async def test_an_expired_request_reservation_no_longer_counts(catalogs: list[Catalog]) -> None:
    await catalogs[0].add_link(Link(id="l2", created_at=utc_now(), max_files=1), "hash2")
    await catalogs[0].reserve("l2", "crashed", size=None, exact=False, files=1, now=utc_now(),
                              hold_until="2000-01-01T00:00:00.000000Z")
    assert await catalogs[1].reserve("l2", "next", size=5, exact=True, files=1, now=utc_now(),
                                     hold_until=None) == 5
    found = await catalogs[0].get_link("l2", utc_now())
    assert found is not None and (found.files_reserved, found.uploads_in_flight) == (1, 1)


async def test_hooks_and_the_access_log_name_the_link_never_its_secret(
        linked: Settings, caplog: pytest.LogCaptureFixture) -> None:
    from ingest.app import create_app
    from ingest.observe.events import HookEvent, HookResponse

    caplog.set_level("INFO", logger="ingest.access")
    seen: list[dict[str, Any]] = []

    async def hook(event: HookEvent) -> HookResponse | None:
        seen.append({"type": event.type, **event.upload})
        return None

    app = create_app(linked, hooks=[hook])
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        link_id, link = await make_link(client)
        assert (await client.put("/uploads/a.txt", content=b"abc", headers=link)).status_code == 201
        assert (await client.put("/uploads/b.txt", content=b"abc", headers=ROOT)).status_code == 201
        await app.state.service.events.drain(5)
    finished = [(event["filename"], event["link"], event["token"]) for event in seen if event["type"] == "post-finish"]
    assert finished == [("a.txt", link_id, None), ("b.txt", None, "admin")]
    secret = link["authorization"].split()[1]
    assert secret not in caplog.text and f"link={link_id}" in caplog.text and "token=admin" in caplog.text


async def test_a_tus_upload_of_deferred_length_holds_all_that_is_left_and_no_more(client: httpx.AsyncClient) -> None:
    _, link = await make_link(client, max_size=1000)
    created = await client.post("/files/", headers={**link, **TUS, "upload-defer-length": "1"})
    location = created.headers["location"]
    assert_error(await client.put("/uploads/a.bin", content=b"x", headers=link), 403, "link_used_up")
    too_long = await client.patch(location, content=b"d" * 10,
                                  headers={**link, **PATCH, "upload-offset": "0", "upload-length": "1001"})
    assert_error(too_long, 413, "link_limit_exceeded")
    done = await client.patch(location, content=b"d" * 700,
                              headers={**link, **PATCH, "upload-offset": "0", "upload-length": "700"})
    assert done.status_code == 204, done.text
    current = (await client.get("/links/current", headers=link)).json()
    assert (current["bytes_used"], current["bytes_left"]) == (700, 300)
