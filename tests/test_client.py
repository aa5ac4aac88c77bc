"""ingest.client without a server: a mock transport plays the HTTP API."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import httpx
import pytest

from ingest.client import ChecksumMismatch, Client, ClientError, DestinationExists

CONTENT = bytes(range(256)) * 40  # 10 KiB
DIGEST = hashlib.sha256(CONTENT).hexdigest()
FILE_ID = "a" * 32


def described(file_id: str = FILE_ID, size: int = len(CONTENT), digest: str = DIGEST,
              filename: str = "f.bin") -> dict[str, object]:
    return {"id": file_id, "filename": filename, "size": size, "sha256": digest,
            "content_type": "application/octet-stream", "created_at": "2026-01-01T00:00:00Z",
            "metadata": {}, "url": "", "content_url": ""}


class FakeServer:
    """GET /uploads/ID and GET /uploads/ID/content with Range + If-Range, as the server does."""

    def __init__(self, content: bytes = CONTENT, catalog_sha256: str = DIGEST) -> None:
        self.content = content
        self.catalog_sha256 = catalog_sha256
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        etag = f'"{hashlib.sha256(self.content).hexdigest()}"'
        if request.url.path == f"/uploads/{FILE_ID}":
            return httpx.Response(200, json=described(size=len(self.content), digest=self.catalog_sha256))
        if request.url.path == f"/uploads/{FILE_ID}/content":
            match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("range", ""))
            if match and request.headers.get("if-range") == etag:
                start = int(match[1])
                return httpx.Response(206, content=self.content[start:], headers={
                    "etag": etag, "content-range": f"bytes {start}-{len(self.content) - 1}/{len(self.content)}"})
            return httpx.Response(200, content=self.content, headers={"etag": etag})
        return httpx.Response(404, json={"error": "not_found", "detail": "no such path"})


def client_for(handler: object, tmp_path: Path) -> Client:
    return Client("http://ingest.test", transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
                  tus_state=tmp_path / "tus.json")


def test_upload_hashes_what_it_sends_and_reports_progress(tmp_path: Path) -> None:
    received: list[bytes] = []

    def server(request: httpx.Request) -> httpx.Response:
        received.append(request.read())
        assert request.url.raw_path == b"/uploads/a%20b.bin"
        return httpx.Response(201, json={"files": [described(filename="a b.bin")]})

    path = tmp_path / "a b.bin"
    path.write_bytes(CONTENT)
    seen: list[tuple[int, int | None]] = []
    stored = client_for(server, tmp_path).upload(path, progress=lambda done, total: seen.append((done, total)))
    assert received == [CONTENT] and stored.sha256 == DIGEST and stored.filename == "a b.bin"
    assert seen[0] == (0, len(CONTENT)) and seen[-1] == (len(CONTENT), len(CONTENT))


def test_upload_takes_a_file_object_without_a_name(tmp_path: Path) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        assert request.read() == CONTENT and request.headers["content-length"] == str(len(CONTENT))
        return httpx.Response(201, json={"files": [described(filename="upload")]})

    assert client_for(server, tmp_path).upload(io.BytesIO(CONTENT)).id == FILE_ID


def test_upload_streams_a_pipe_chunked(tmp_path: Path) -> None:
    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

    def server(request: httpx.Request) -> httpx.Response:
        assert request.read() == CONTENT
        assert "content-length" not in request.headers and request.headers["transfer-encoding"] == "chunked"
        return httpx.Response(201, json={"files": [described()]})

    seen: list[int | None] = []
    client_for(server, tmp_path).upload(Pipe(CONTENT), filename="f.bin",
                                        progress=lambda done, total: seen.append(total))
    assert set(seen) == {None}


def test_upload_refuses_a_server_sha256_that_differs_from_the_local_bytes(tmp_path: Path) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(201, json={"files": [described(digest="0" * 64)]})

    with pytest.raises(ChecksumMismatch, match="0000"):
        client_for(server, tmp_path).upload(io.BytesIO(CONTENT), filename="f.bin")


def test_a_refusal_carries_the_server_status_and_error_code(tmp_path: Path) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(413, json={"error": "file_too_large", "detail": "over 1 KiB"})

    with pytest.raises(ClientError) as refused:
        client_for(server, tmp_path).upload(io.BytesIO(CONTENT), filename="f.bin")
    assert (refused.value.status, refused.value.code) == (413, "file_too_large")
    assert "over 1 KiB" in str(refused.value)


def test_list_follows_every_page_and_stops_at_a_limit(tmp_path: Path) -> None:
    ids = [f"{n:032x}" for n in range(7)]

    def server(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("cursor", "0"))
        end = start + int(request.url.params["limit"])
        more = end < len(ids)
        return httpx.Response(200, json={"items": [described(file_id=i) for i in ids[start:end]],
                                         "next_cursor": str(end) if more else None, "next": None})

    client = client_for(server, tmp_path)
    assert [item.id for item in client.list(page_size=3)] == ids
    assert [item.id for item in client.list(limit=5, page_size=3)] == ids[:5]


def test_download_writes_the_file_after_checking_its_sha256(tmp_path: Path) -> None:
    server = FakeServer()
    written = client_for(server, tmp_path).download(FILE_ID, tmp_path)
    assert written == tmp_path / "f.bin" and written.read_bytes() == CONTENT
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".part", ".etag"))] == []


def test_download_resumes_with_range_and_if_range(tmp_path: Path) -> None:
    server = FakeServer()
    destination = tmp_path / "out.bin"
    partial = tmp_path / f".out.bin.{FILE_ID}.part"
    partial.write_bytes(CONTENT[:4000])
    partial.with_name(partial.name + ".etag").write_text(f'"{DIGEST}"')
    client_for(server, tmp_path).download(FILE_ID, destination)
    content_request = server.requests[-1]
    assert content_request.headers["range"] == "bytes=4000-"
    assert content_request.headers["if-range"] == f'"{DIGEST}"'
    assert destination.read_bytes() == CONTENT


def test_download_starts_over_when_if_range_no_longer_matches(tmp_path: Path) -> None:
    server = FakeServer()
    partial = tmp_path / f".out.bin.{FILE_ID}.part"
    partial.write_bytes(b"stale bytes of another version")
    partial.with_name(partial.name + ".etag").write_text('"some-other-etag"')
    client_for(server, tmp_path).download(FILE_ID, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == CONTENT


def test_download_keeps_nothing_when_the_bytes_do_not_match_the_catalog(tmp_path: Path) -> None:
    server = FakeServer(catalog_sha256="f" * 64)
    with pytest.raises(ChecksumMismatch):
        client_for(server, tmp_path).download(FILE_ID, tmp_path / "out.bin")
    assert sorted(tmp_path.iterdir()) == []


def test_download_never_replaces_a_different_file_unless_forced(tmp_path: Path) -> None:
    destination = tmp_path / "f.bin"
    destination.write_bytes(b"mine")
    client = client_for(FakeServer(), tmp_path)
    with pytest.raises(DestinationExists):
        client.download(FILE_ID, destination)
    assert destination.read_bytes() == b"mine"
    client.download(FILE_ID, destination, force=True)
    assert destination.read_bytes() == CONTENT


def test_download_onto_the_same_file_fetches_nothing(tmp_path: Path) -> None:
    destination = tmp_path / "f.bin"
    destination.write_bytes(CONTENT)
    server = FakeServer()
    client_for(server, tmp_path).download(FILE_ID, destination)
    assert [request.url.path for request in server.requests] == [f"/uploads/{FILE_ID}"]


def test_a_stored_name_cannot_leave_the_target_directory(tmp_path: Path) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/content"):
            return httpx.Response(200, content=CONTENT)
        return httpx.Response(200, json=described(filename="../../etc/passwd"))

    written = client_for(server, tmp_path).download(FILE_ID, tmp_path)
    assert written == tmp_path / "passwd"
