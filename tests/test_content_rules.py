"""Content rules on the bytes: detected media type recorded on every path, `--accept` and
`--on-type-mismatch` refusing with 415 at the first block, nothing kept."""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ingest import content_rules
from ingest.config import Settings
from ingest.content_rules import ContentRules, detect, matches, mismatched
from ingest.errors import UnsupportedFileType
from ingest.observe.events import HookEvent, HookResponse
from tests.conftest import MULTIPART, app_client, file_part, multipart_body, stored_files, temp_files

pytestmark = pytest.mark.anyio
TUS = {"tus-resumable": "1.0.0"}


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


PNG = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
       + _png_chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + _png_chunk(b"IEND", b""))
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< >>\n%%EOF\n"
TEXT = b"just some words in a plain text file\n" * 20


def test_libmagic_names_common_types_from_their_first_bytes() -> None:
    assert detect(PNG) == "image/png"
    assert detect(PDF) == "application/pdf"
    assert detect(TEXT) == "text/plain"
    assert detect(b"") is None
    assert detect(b"\xff\xfe\x00\x01" + random.Random(0).randbytes(4096)) is None  # octet-stream says nothing


@pytest.mark.parametrize(("media_type", "patterns", "expected"), [
    ("image/png", ["image/*"], True),
    ("image/png", ["application/pdf", "image/*"], True),
    ("application/pdf", ["image/*"], False),
    ("image/jpg", ["image/jpeg"], True),
    (None, ["image/*"], False),
    (None, ["application/octet-stream"], True),
    ("video/mp4", ["*/*"], True),
    ("imagex/png", ["image/*"], False),
])
def test_accept_patterns_match_type_and_subtype(media_type: str | None, patterns: list[str], expected: bool) -> None:
    assert matches(media_type, patterns) is expected


@pytest.mark.parametrize(("declared", "detected", "expected"), [
    ("image/png", "image/png", False),
    ("application/pdf", "image/png", True),
    ("IMAGE/JPG; x=1", "image/jpeg", False),
    ("text/csv", "text/plain", False),
    ("application/json", "text/plain", False),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/zip", False),
    ("application/octet-stream", "image/png", False),
    ("image/png", None, False),
    ("image/png", "text/plain", True),
])
def test_a_mismatch_is_bytes_that_contradict_the_declared_type(
        declared: str, detected: str | None, expected: bool) -> None:
    assert mismatched(declared, detected) is expected


def test_bad_rules_are_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="accept or refuse"):
        ContentRules(on_type_mismatch="sometimes")
    with pytest.raises(ValueError, match="media type"):
        ContentRules(accept=("png",))
    with pytest.raises(UnsupportedFileType):
        ContentRules(accept=("image/*",)).check(filename="a", declared="image/png", detected="application/pdf")


@pytest.fixture
async def strict(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.replace(accept=("image/*", "application/pdf"),
                                           on_type_mismatch="refuse", block_size=64 * 1024)) as client:
        yield client


def assert_refused(response: httpx.Response, settings: Settings) -> None:
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_file_type"
    assert stored_files(settings.data_dir) == []
    assert temp_files(settings.data_dir) == []


async def test_detected_type_is_recorded_beside_the_declared_one(client: httpx.AsyncClient) -> None:
    response = await client.post("/uploads", headers=MULTIPART,
                                 content=multipart_body([file_part("f", "pic.bin", PNG, "application/pdf")]))
    assert response.status_code == 201
    stored = response.json()["files"][0]
    assert (stored["content_type"], stored["detected_type"]) == ("application/pdf", "image/png")
    assert (await client.get(f"/uploads/{stored['id']}")).json()["detected_type"] == "image/png"
    raw = await client.put("/uploads/words.txt", content=TEXT)
    assert raw.json()["files"][0]["detected_type"] == "text/plain"


@pytest.mark.parametrize("protocol", ["multipart", "raw"])
async def test_accept_refuses_a_file_whose_bytes_are_outside_the_list(
        strict: httpx.AsyncClient, settings: Settings, protocol: str) -> None:
    if protocol == "multipart":
        response = await strict.post("/uploads", headers=MULTIPART, content=multipart_body([
            file_part("f", "ok.png", PNG, "image/png"), file_part("f", "lie.png", TEXT, "image/png")]))
    else:
        response = await strict.put("/uploads/lie.png", content=TEXT, headers={"content-type": "image/png"})
    assert_refused(response, settings)
    assert "text/plain" in response.json()["detail"]


async def test_a_mismatch_is_refused_under_the_refuse_policy(strict: httpx.AsyncClient, settings: Settings) -> None:
    response = await strict.put("/uploads/doc.pdf", content=PNG, headers={"content-type": "application/pdf"})
    assert_refused(response, settings)
    assert (await strict.put("/uploads/doc.pdf", content=PDF)).status_code == 201


async def test_an_empty_file_has_no_type_and_is_refused_by_accept(
        strict: httpx.AsyncClient, settings: Settings) -> None:
    assert_refused(await strict.put("/uploads/empty.png", content=b""), settings)


async def test_detection_runs_once_per_file_on_its_first_block(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    heads: list[bytes] = []

    def counting_detect(head: bytes) -> str | None:
        heads.append(head)
        return detect(head)

    monkeypatch.setattr(content_rules, "detect", counting_detect)
    content = PNG + bytes(5 * 1024 * 1024)

    async def small_chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 4096):
            yield content[start:start + 4096]

    async with app_client(settings.replace(block_size=256 * 1024)) as client:
        response = await client.put("/uploads/big.png", content=small_chunks())
        assert response.status_code == 201
        assert response.json()["files"][0]["detected_type"] == "image/png"
    assert heads == [content[:content_rules.DETECT_BYTES]]


async def test_tus_refuses_at_the_patch_bringing_the_first_bytes_and_terminates_the_upload(
        strict: httpx.AsyncClient, settings: Settings) -> None:
    created = await strict.post("/files/", headers={**TUS, "upload-length": str(len(TEXT)),
                                                    "upload-metadata": "filename bGllLnBuZw=="})
    assert created.status_code == 201
    location = created.headers["location"]
    patch = await strict.patch(location, content=TEXT, headers={
        **TUS, "upload-offset": "0", "content-type": "application/offset+octet-stream"})
    assert patch.status_code == 415
    assert patch.json()["error"] == "unsupported_file_type"
    assert (await strict.head(location, headers=TUS)).status_code == 404
    assert stored_files(settings.data_dir) == []
    assert list((settings.data_dir / "tus").iterdir()) == []


async def test_tus_records_the_type_detected_at_the_first_patch(client: httpx.AsyncClient) -> None:
    content = PNG + b"\x00" * 1000
    created = await client.post("/files/", headers={**TUS, "upload-length": str(len(content))})
    location = created.headers["location"]
    for offset in (0, 100):  # the first PATCH brings only 100 bytes: detection uses those
        end = 100 if offset == 0 else len(content)
        patch = await client.patch(location, content=content[offset:end], headers={
            **TUS, "upload-offset": str(offset), "content-type": "application/offset+octet-stream"})
        assert patch.status_code == 204, patch.text
    stored = (await client.get(f"/uploads/{patch.headers['ingest-file-id']}")).json()
    assert stored["detected_type"] == "image/png"


async def test_hooks_receive_the_detected_type(settings: Settings) -> None:
    seen: list[dict[str, Any]] = []

    async def hook(event: HookEvent) -> HookResponse | None:
        seen.append({"type": event.type, **event.upload})
        return None

    from ingest.app import create_app

    app = create_app(settings, hooks=[hook])
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        assert (await client.put("/uploads/a.pdf", content=PDF)).status_code == 201
        await app.state.service.events.drain(5)
    finish = next(event for event in seen if event["type"] == "post-finish")
    assert finish["detected_type"] == "application/pdf"
