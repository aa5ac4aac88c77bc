"""Downloads from the S3 backend behave as from disk: ETag, 304, ranges, HEAD; or a presigned
redirect. In-process app on real Ceph + PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ingest.config import Settings
from tests.backends import Ceph, multipart_uploads, object_keys
from tests.conftest import MULTIPART, app_client, file_part, multipart_body, sha256

pytestmark = pytest.mark.anyio

CONTENT = os.urandom(100_000)


def s3_settings(tmp_path: Path, ceph: Ceph, bucket: str, postgres_url: str, **changes: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", fsync=False, storage="s3", s3_endpoint=ceph.endpoints[0],
                    s3_bucket=bucket, s3_access_key=ceph.access_key, s3_secret_key=ceph.secret_key,
                    catalog_url=postgres_url).replace(**changes)


@pytest.fixture
async def s3_client(tmp_path: Path, ceph: Ceph, bucket: str,
                    postgres_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(s3_settings(tmp_path, ceph, bucket, postgres_url)) as client:
        yield client


async def upload(client: httpx.AsyncClient, content: bytes = CONTENT) -> dict[str, object]:
    response = await client.put("/uploads/report.pdf", content=content,
                                headers={"content-type": "application/pdf"})
    assert response.status_code == 201, response.text
    return dict(response.json()["files"][0])


async def test_a_download_from_s3_has_the_bytes_etag_and_safe_headers(s3_client: httpx.AsyncClient) -> None:
    stored = await upload(s3_client)
    response = await s3_client.get(f"/uploads/{stored['id']}/content")
    assert response.status_code == 200
    assert response.content == CONTENT
    assert response.headers["etag"] == f'"{sha256(CONTENT)}"'
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(CONTENT))
    assert response.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_head_answers_the_headers_without_a_body(s3_client: httpx.AsyncClient) -> None:
    stored = await upload(s3_client)
    response = await s3_client.head(f"/uploads/{stored['id']}/content")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(CONTENT))
    assert response.headers["etag"] == f'"{sha256(CONTENT)}"'


@pytest.mark.parametrize(("range_header", "status", "body", "content_range"), [
    ("bytes=0-9", 206, CONTENT[:10], f"bytes 0-9/{len(CONTENT)}"),
    ("bytes=-5", 206, CONTENT[-5:], f"bytes {len(CONTENT) - 5}-{len(CONTENT) - 1}/{len(CONTENT)}"),
    ("bytes=99990-", 206, CONTENT[99990:], f"bytes 99990-99999/{len(CONTENT)}"),
    ("bytes=0-1,5-6", 200, CONTENT, None),  # several ranges: S3 serves one, so all is sent
])
async def test_ranges_are_served_by_the_store(s3_client: httpx.AsyncClient, range_header: str, status: int,
                                              body: bytes, content_range: str | None) -> None:
    stored = await upload(s3_client)
    response = await s3_client.get(f"/uploads/{stored['id']}/content", headers={"range": range_header})
    assert response.status_code == status
    assert response.content == body
    assert response.headers.get("content-range") == content_range


async def test_a_range_outside_the_file_is_416_json(s3_client: httpx.AsyncClient) -> None:
    stored = await upload(s3_client)
    response = await s3_client.get(f"/uploads/{stored['id']}/content", headers={"range": "bytes=200000-"})
    assert response.status_code == 416
    assert response.json()["error"] == "range_not_satisfiable"


async def test_if_range_with_another_etag_sends_the_whole_file(s3_client: httpx.AsyncClient) -> None:
    stored = await upload(s3_client)
    url = f"/uploads/{stored['id']}/content"
    stale = await s3_client.get(url, headers={"range": "bytes=0-9", "if-range": '"other"'})
    assert (stale.status_code, stale.content) == (200, CONTENT)
    fresh = await s3_client.get(url, headers={"range": "bytes=0-9", "if-range": f'"{stored["sha256"]}"'})
    assert (fresh.status_code, fresh.content) == (206, CONTENT[:10])


async def test_if_none_match_with_the_etag_is_304(s3_client: httpx.AsyncClient) -> None:
    stored = await upload(s3_client)
    response = await s3_client.get(f"/uploads/{stored['id']}/content",
                                   headers={"if-none-match": f'"{stored["sha256"]}"'})
    assert response.status_code == 304
    assert response.content == b""


async def test_delete_removes_the_object(s3_client: httpx.AsyncClient, ceph: Ceph, bucket: str) -> None:
    stored = await upload(s3_client)
    assert object_keys(ceph.client(), bucket) == [f"files/{stored['id']}"]
    assert (await s3_client.delete(f"/uploads/{stored['id']}")).status_code == 204
    assert object_keys(ceph.client(), bucket) == []
    assert (await s3_client.get(f"/uploads/{stored['id']}/content")).status_code == 404


async def test_a_digest_mismatch_stores_nothing_in_s3(s3_client: httpx.AsyncClient, ceph: Ceph,
                                                      bucket: str) -> None:
    big = os.urandom(12 * 1024 * 1024)  # over one part: a multipart upload was started
    body = multipart_body([file_part("a", "a.bin", big), (b'Content-Disposition: form-data; name="a.sha256"\r\n',
                                                          b"0" * 64)])
    response = await s3_client.post("/uploads", content=body, headers=MULTIPART)
    assert response.status_code == 422
    assert object_keys(ceph.client(), bucket) == []
    assert multipart_uploads(ceph.client(), bucket) == []


async def test_presigned_downloads_redirect_to_the_store(tmp_path: Path, ceph: Ceph, bucket: str,
                                                         postgres_url: str) -> None:
    settings = s3_settings(tmp_path, ceph, bucket, postgres_url, s3_presign_seconds=60)
    async with app_client(settings) as client:
        stored = await upload(client)
        response = await client.get(f"/uploads/{stored['id']}/content")
    assert response.status_code == 307
    direct = httpx.get(response.headers["location"])
    assert direct.status_code == 200
    assert direct.content == CONTENT
    assert direct.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    assert direct.headers["content-type"] == "application/pdf"
    assert httpx.get(response.headers["location"].replace("Signature=", "Signature=0")).status_code == 403
