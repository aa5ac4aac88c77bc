"""Every endpoint, error and limit, through the ASGI app in process."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openapi_spec_validator
import pytest

from ingest.config import Settings
from ingest.errors import CATALOGUE
from tests.conftest import (
    MULTIPART,
    app_client,
    field_part,
    file_part,
    multipart_body,
    sha256,
    stored_files,
    temp_files,
)

pytestmark = pytest.mark.anyio


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert body["detail"]
    return body


async def upload(client: httpx.AsyncClient, content: bytes = b"hello", filename: str = "a.txt") -> dict[str, Any]:
    response = await client.post("/uploads", headers=MULTIPART,
                                 content=multipart_body([file_part("file", filename, content)]))
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()["files"][0]
    return stored


# --- POST /uploads ----------------------------------------------------------------------

async def test_multipart_upload_returns_201_with_each_file_and_the_fields(client: httpx.AsyncClient) -> None:
    body = multipart_body([field_part("note", "hi"), field_part("tag", "a"), field_part("tag", "b"),
                           file_part("file", "one.txt", b"1" * 10, "text/plain"),
                           file_part("file", "two.bin", b"2" * 20)])
    response = await client.post("/uploads", headers=MULTIPART, content=body)
    assert response.status_code == 201
    created = response.json()
    assert [(f["filename"], f["size"], f["sha256"]) for f in created["files"]] == [
        ("one.txt", 10, sha256(b"1" * 10)), ("two.bin", 20, sha256(b"2" * 20))]
    assert created["fields"] == {"note": "hi", "tag": ["a", "b"]}
    assert "location" not in response.headers  # only for single-file uploads
    first = created["files"][0]
    assert first["content_type"] == "text/plain"
    assert first["url"] == f"http://testserver/uploads/{first['id']}"
    assert first["content_url"] == f"http://testserver/uploads/{first['id']}/content"
    assert first["created_at"].endswith("Z")


async def test_single_file_upload_sets_location(client: httpx.AsyncClient) -> None:
    response = await client.post("/uploads", headers=MULTIPART, content=multipart_body([file_part("f", "a", b"x")]))
    assert response.headers["location"] == response.json()["files"][0]["url"]


async def test_multipart_body_streamed_in_many_small_chunks(client: httpx.AsyncClient) -> None:
    content = bytes(range(256)) * 4096
    body = multipart_body([file_part("f", "big.bin", content)])

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7001):
            yield body[start:start + 7001]

    response = await client.post("/uploads", headers=MULTIPART, content=chunks())
    assert response.json()["files"][0]["sha256"] == sha256(content)


@pytest.mark.parametrize(("content_type", "status", "code"), [
    ("text/plain", 415, "unsupported_media_type"),
    ("multipart/form-data", 400, "malformed_multipart"),
    ("multipart/form-data; boundary=other", 400, "malformed_multipart"),
])
async def test_wrong_content_type_is_refused(client: httpx.AsyncClient, content_type: str, status: int,
                                             code: str) -> None:
    response = await client.post("/uploads", headers={"content-type": content_type},
                                 content=multipart_body([file_part("f", "a", b"x")]))
    assert_error(response, status, code)


async def test_post_without_content_type_is_a_415(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/uploads", content=b"x"), 415, "unsupported_media_type")


async def test_truncated_multipart_is_a_400_and_nothing_is_kept(client: httpx.AsyncClient, settings: Settings) -> None:
    body = multipart_body([file_part("f", "a", b"x" * 5000)])
    assert_error(await client.post("/uploads", headers=MULTIPART, content=body[:-40]), 400, "malformed_multipart")
    assert temp_files(settings.data_dir) == [] and stored_files(settings.data_dir) == []
    assert (await client.get("/uploads")).json()["items"] == []


async def test_digest_mismatch_is_a_422(client: httpx.AsyncClient, settings: Settings) -> None:
    body = multipart_body([file_part("f", "a", b"data"), field_part("f.sha256", sha256(b"other"))])
    assert_error(await client.post("/uploads", headers=MULTIPART, content=body), 422, "digest_mismatch")
    assert stored_files(settings.data_dir) == []


async def test_malformed_digest_field_is_a_400(client: httpx.AsyncClient) -> None:
    body = multipart_body([file_part("f", "a", b"data"), field_part("f.sha256", "zz")])
    assert_error(await client.post("/uploads", headers=MULTIPART, content=body), 400, "invalid_digest")


async def test_request_over_the_limit_is_refused_from_content_length(settings: Settings) -> None:
    async with app_client(settings.replace(max_request_size=100)) as client:
        body = multipart_body([file_part("f", "a", b"x" * 200)])
        assert_error(await client.post("/uploads", headers=MULTIPART, content=body), 413, "request_too_large")


async def test_chunked_request_over_the_limit_is_refused_while_streaming(settings: Settings) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 100

    async with app_client(settings.replace(max_request_size=1000)) as client:
        response = await client.put("/uploads/big.bin", content=chunks())
        assert_error(response, 413, "request_too_large")
    assert temp_files(settings.data_dir) == []


async def test_file_over_the_limit_is_a_413(settings: Settings) -> None:
    async with app_client(settings.replace(max_file_size=10)) as client:
        body = multipart_body([file_part("f", "a", b"x" * 11)])
        assert_error(await client.post("/uploads", headers=MULTIPART, content=body), 413, "file_too_large")
        assert_error(await client.put("/uploads/a", content=b"x" * 11), 413, "file_too_large")
    assert temp_files(settings.data_dir) == []


# --- raw bodies -------------------------------------------------------------------------

async def test_put_stores_the_raw_body_under_the_path_name(client: httpx.AsyncClient) -> None:
    response = await client.put("/uploads/disk%20image.iso", content=b"raw bytes")
    assert response.status_code == 201
    stored = response.json()["files"][0]
    assert (stored["filename"], stored["size"], stored["sha256"]) == ("disk image.iso", 9, sha256(b"raw bytes"))
    assert stored["content_type"] == "application/x-iso9660-image"
    assert response.headers["location"] == stored["url"]


async def test_put_with_a_path_keeps_only_the_last_segment(client: httpx.AsyncClient) -> None:
    response = await client.put("/uploads/dir/sub/name.txt", content=b"x")
    assert response.json()["files"][0]["filename"] == "name.txt"


async def test_post_octet_stream_takes_the_name_from_the_query_or_content_disposition(
        client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/octet-stream"}
    response = await client.post("/uploads?filename=q.bin", headers=headers, content=b"1")
    assert response.json()["files"][0]["filename"] == "q.bin"
    response = await client.post("/uploads", content=b"1", headers={
        **headers, "content-disposition": "attachment; filename=\"cd.bin\""})
    assert response.json()["files"][0]["filename"] == "cd.bin"
    assert_error(await client.post("/uploads", headers=headers, content=b"1"), 400, "invalid_filename")


def content_digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


async def test_put_with_matching_content_digest_is_stored(client: httpx.AsyncClient) -> None:
    response = await client.put("/uploads/a", content=b"abc", headers={
        "content-digest": "sha-512=:AAAA:, " + content_digest(b"abc")})
    assert response.status_code == 201


async def test_put_with_wrong_content_digest_is_a_422_and_keeps_nothing(
        client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.put("/uploads/a", content=b"abc", headers={"content-digest": content_digest(b"abd")})
    assert_error(response, 422, "digest_mismatch")
    assert stored_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []


@pytest.mark.parametrize("header", ["sha-256=:not base64!:", "sha-256=:AAAA:", "garbage"])
async def test_put_with_malformed_content_digest_is_a_400(client: httpx.AsyncClient, header: str) -> None:
    assert_error(await client.put("/uploads/a", content=b"abc", headers={"content-digest": header}),
                 400, "invalid_digest")


async def test_put_with_a_chunked_body_is_stored(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"part one, "
        yield b"part two"

    response = await client.put("/uploads/c.txt", content=chunks())
    assert response.json()["files"][0]["sha256"] == sha256(b"part one, part two")


@pytest.mark.parametrize("name", ["%00evil", "a%0Ab", "%2E%2E", "x" * 300, "%E2%80%AEgnp.exe"])
async def test_put_with_an_unusable_name_is_a_400(client: httpx.AsyncClient, name: str) -> None:
    assert_error(await client.put(f"/uploads/{name}", content=b"x"), 400, "invalid_filename")


# --- reading back ---------------------------------------------------------------------------

async def test_list_is_newest_first_and_paginated(client: httpx.AsyncClient) -> None:
    ids = [(await upload(client, bytes([n]), f"{n}.bin"))["id"] for n in range(5)]
    first = (await client.get("/uploads?limit=2")).json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    second = (await client.get(first["next"])).json()
    third = (await client.get("/uploads", params={"limit": 2, "cursor": second["next_cursor"]})).json()
    assert [item["id"] for item in second["items"] + third["items"]] == ids[::-1][2:]
    assert third["next"] is None and third["next_cursor"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=100000", "cursor=%%%", "cursor=bm9waXBl"])
async def test_bad_list_parameters_are_a_400(client: httpx.AsyncClient, query: str) -> None:
    assert_error(await client.get(f"/uploads?{query}"), 400, "invalid_request")


async def test_get_returns_the_metadata(client: httpx.AsyncClient) -> None:
    stored = await upload(client)
    response = await client.get(f"/uploads/{stored['id']}")
    assert response.json() == stored


@pytest.mark.parametrize("path", ["/uploads/0123456789abcdef0123456789abcdef", "/uploads/nope",
                                  "/uploads/../../etc/passwd/content", "/uploads/nope/content"])
async def test_unknown_ids_are_a_404(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404, "not_found")


async def test_delete_removes_file_and_row(client: httpx.AsyncClient, settings: Settings) -> None:
    stored = await upload(client)
    assert (await client.delete(f"/uploads/{stored['id']}")).status_code == 204
    assert stored_files(settings.data_dir) == []
    assert_error(await client.get(f"/uploads/{stored['id']}"), 404, "not_found")
    assert_error(await client.delete(f"/uploads/{stored['id']}"), 404, "not_found")


async def test_unknown_route_and_method_are_json_errors(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nowhere"), 404, "not_found")
    assert_error(await client.patch("/uploads"), 405, "method_not_allowed")


# --- downloads -------------------------------------------------------------------------------

CONTENT = bytes(range(256)) * 40


async def test_download_has_type_length_etag_and_safe_disposition(client: httpx.AsyncClient) -> None:
    response = await client.put("/uploads/r%C3%A9sum%C3%A9%20%22final%22.pdf", content=CONTENT)
    stored = response.json()["files"][0]
    response = await client.get(stored["content_url"])
    assert response.content == CONTENT
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(CONTENT))
    assert response.headers["etag"] == f'"{stored["sha256"]}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"r_sum_ _final_.pdf\"; "
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf")


async def test_head_has_the_headers_and_no_body(client: httpx.AsyncClient) -> None:
    stored = await upload(client, CONTENT)
    response = await client.head(stored["content_url"])
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(CONTENT))
    assert response.content == b""


@pytest.mark.parametrize(("range_header", "status", "expected"), [
    ("bytes=0-9", 206, CONTENT[:10]),
    ("bytes=100-", 206, CONTENT[100:]),
    ("bytes=-5", 206, CONTENT[-5:]),
])
async def test_ranges_return_206_with_the_right_bytes(client: httpx.AsyncClient, range_header: str,
                                                      status: int, expected: bytes) -> None:
    stored = await upload(client, CONTENT)
    response = await client.get(stored["content_url"], headers={"range": range_header})
    assert response.status_code == status
    assert response.content == expected
    assert response.headers["content-range"].startswith("bytes ")


async def test_multiple_ranges_return_multipart_byteranges(client: httpx.AsyncClient) -> None:
    stored = await upload(client, CONTENT)
    response = await client.get(stored["content_url"], headers={"range": "bytes=0-1,10-11"})
    assert response.status_code == 206
    assert response.headers["content-type"].startswith("multipart/byteranges")


async def test_unsatisfiable_range_is_a_416_json_error(client: httpx.AsyncClient) -> None:
    stored = await upload(client, CONTENT)
    response = await client.get(stored["content_url"], headers={"range": f"bytes={len(CONTENT) + 10}-"})
    assert_error(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{len(CONTENT)}"


async def test_malformed_range_is_a_400_json_error(client: httpx.AsyncClient) -> None:
    stored = await upload(client, CONTENT)
    assert_error(await client.get(stored["content_url"], headers={"range": "bytes=9-2"}), 400, "invalid_range")


async def test_if_range_with_a_stale_etag_returns_the_whole_file(client: httpx.AsyncClient) -> None:
    stored = await upload(client, CONTENT)
    response = await client.get(stored["content_url"], headers={"range": "bytes=0-9", "if-range": '"stale"'})
    assert response.status_code == 200 and response.content == CONTENT
    response = await client.get(stored["content_url"], headers={
        "range": "bytes=0-9", "if-range": f'"{stored["sha256"]}"'})
    assert response.status_code == 206


@pytest.mark.parametrize("header", ["if-none-match", "if-modified-since"])
async def test_conditional_get_returns_304(client: httpx.AsyncClient, header: str) -> None:
    stored = await upload(client, CONTENT)
    first = await client.get(stored["content_url"])
    value = first.headers["etag"] if header == "if-none-match" else first.headers["last-modified"]
    response = await client.get(stored["content_url"], headers={header: value})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == first.headers["etag"]
    other = await client.get(stored["content_url"], headers={"if-none-match": '"something-else"'})
    assert other.status_code == 200


# --- auth, health, openapi ------------------------------------------------------------------

async def test_with_tokens_every_endpoint_but_healthz_needs_one(settings: Settings) -> None:
    async with app_client(settings.replace(tokens=("s3cret", "other"))) as client:
        assert (await client.get("/healthz")).status_code == 200
        for method, path in [("GET", "/uploads"), ("POST", "/uploads"), ("PUT", "/uploads/x"),
                             ("GET", "/openapi.json"), ("GET", "/uploads/abc/content"), ("DELETE", "/uploads/abc")]:
            response = await client.request(method, path, content=b"x")
            body = assert_error(response, 401, "unauthorized")
            assert "s3cret" not in str(body)
            assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.get("/uploads", headers={"authorization": "Bearer s3cre"})
        assert_error(wrong, 401, "unauthorized")
        assert_error(await client.get("/uploads", headers={"authorization": "Basic s3cret"}), 401, "unauthorized")
        for token in ("s3cret", "other"):
            assert (await client.get("/uploads", headers={"authorization": f"Bearer {token}"})).status_code == 200


async def test_openapi_declares_exact_media_types(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/uploads"]["post"]["requestBody"]["content"]
    assert set(post) == {"multipart/form-data", "application/octet-stream"}
    assert set(spec["paths"]["/uploads/{filename}"]["put"]["requestBody"]["content"]) == {"application/octet-stream"}
    download = spec["paths"]["/uploads/{file_id}/content"]["get"]["responses"]
    assert set(download["200"]["content"]) == {"*/*"}  # the stored file's own media type
    assert set(download["206"]["content"]) == {"*/*"}


async def test_openapi_is_a_valid_document(client: httpx.AsyncClient) -> None:
    openapi_spec_validator.validate((await client.get("/openapi.json")).json())


def test_every_error_code_is_distinct() -> None:
    codes = [error.code for error in CATALOGUE]
    assert len(codes) == len(set(codes))
