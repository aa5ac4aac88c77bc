"""Local downloads (ingest/downloads.py): X-Accel-Redirect, pathsend and read sizes, in-process.

The answers nginx makes of an X-Accel-Redirect are checked against a real nginx in
tests/test_nginx.py; here, what ingest itself answers before nginx takes over.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers
from starlette.types import Message

from ingest.config import Settings
from ingest.downloads import READ_SIZE, SAFETY_HEADERS, file_response
from ingest.models import StoredFile
from tests.conftest import app_client

pytestmark = pytest.mark.anyio

PREFIX = "/_ingest_files/"
CONTENT = bytes(range(256)) * 40


@pytest.fixture
async def accel_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.replace(accel_redirect_prefix=PREFIX)) as client:
        yield client


async def put(client: httpx.AsyncClient, name: str = "page.html", content: bytes = CONTENT,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await client.put(f"/uploads/{name}", content=content, headers=headers)
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()["files"][0]
    return stored


def location_of(stored: dict[str, Any]) -> str:
    return f"{PREFIX}{stored['id'][:2]}/{stored['id']}"


async def test_with_accel_redirect_a_download_is_an_empty_answer_naming_the_internal_location(
        accel_client: httpx.AsyncClient, settings: Settings) -> None:
    stored = await put(accel_client)
    response = await accel_client.get(stored["content_url"])
    assert response.status_code == 200
    assert response.content == b"" and response.headers["content-length"] == "0"
    assert response.headers["x-accel-redirect"] == location_of(stored)
    # The location names the stored file below the files directory, as nginx's alias mirrors it.
    relative = response.headers["x-accel-redirect"].removeprefix(PREFIX)
    assert (settings.files_dir / relative).read_bytes() == CONTENT
    assert response.headers["etag"] == f'"{stored["sha256"]}"'
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-disposition"] == 'attachment; filename="page.html"'
    for name, value in SAFETY_HEADERS.items():
        assert response.headers[name] == value


async def test_with_accel_redirect_head_and_a_satisfiable_range_are_left_to_nginx(
        accel_client: httpx.AsyncClient) -> None:
    stored = await put(accel_client)
    head = await accel_client.head(stored["content_url"])
    ranged = await accel_client.get(stored["content_url"], headers={"range": "bytes=0-9"})
    for response in (head, ranged):
        assert response.status_code == 200 and response.content == b""
        assert response.headers["x-accel-redirect"] == location_of(stored)
        assert "content-range" not in response.headers  # nginx makes the 206 from the same Range


@pytest.mark.parametrize(("range_header", "status", "code"), [
    (f"bytes={len(CONTENT) + 10}-", 416, "range_not_satisfiable"),
    ("bytes=9-2", 400, "invalid_range"),
])
async def test_with_accel_redirect_a_bad_range_is_still_refused_by_ingest_in_json(
        accel_client: httpx.AsyncClient, range_header: str, status: int, code: str) -> None:
    stored = await put(accel_client)
    response = await accel_client.get(stored["content_url"], headers={"range": range_header})
    assert response.status_code == status
    assert response.json()["error"] == code
    assert "x-accel-redirect" not in response.headers


async def test_with_accel_redirect_a_conditional_get_is_still_answered_304_by_ingest(
        accel_client: httpx.AsyncClient) -> None:
    stored = await put(accel_client)
    response = await accel_client.get(stored["content_url"], headers={"if-none-match": f'"{stored["sha256"]}"'})
    assert response.status_code == 304
    assert "x-accel-redirect" not in response.headers


async def test_with_accel_redirect_a_request_without_a_token_never_gets_the_location(settings: Settings) -> None:
    async with app_client(settings.replace(accel_redirect_prefix=PREFIX, tokens=("s3cret",))) as client:
        stored = await put(client, headers={"authorization": "Bearer s3cret"})
        response = await client.get(stored["content_url"])
    assert response.status_code == 401
    assert "x-accel-redirect" not in response.headers


async def test_without_the_setting_ingest_sends_the_bytes_itself(client: httpx.AsyncClient) -> None:
    stored = await put(client)
    response = await client.get(stored["content_url"])
    assert response.content == CONTENT
    assert "x-accel-redirect" not in response.headers


# --- how the bytes go out: pathsend when the server offers it, else large reads ------------

def stored_file(path: Path) -> StoredFile:
    return StoredFile(id="f" * 32, filename="a.bin", size=path.stat().st_size, sha256="0" * 64,
                      content_type="application/octet-stream", created_at="2026-01-01T00:00:00+00:00")


async def answer(path: Path, extensions: dict[str, Any]) -> list[Message]:
    scope = {"type": "http", "method": "GET", "headers": [], "asgi": {"spec_version": "2.4"},
             "extensions": extensions}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    response = file_response(stored_file(path), path, Headers(scope=scope), method="GET")
    await response(scope, receive, send)
    return sent


async def test_a_server_offering_pathsend_gets_the_path_instead_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(3 * READ_SIZE))
    sent = await answer(path, {"http.response.pathsend": {}})
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.pathsend"]
    assert sent[1]["path"] == str(path)


async def test_without_pathsend_the_file_goes_out_in_1_mib_reads(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    content = os.urandom(3 * READ_SIZE + 5)
    path.write_bytes(content)
    sent = await answer(path, {})
    bodies = [message["body"] for message in sent if message["type"] == "http.response.body"]
    assert READ_SIZE == 1024 * 1024
    assert [len(body) for body in bodies] == [READ_SIZE] * 3 + [5]
    assert b"".join(bodies) == content
