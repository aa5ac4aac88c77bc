"""The tus client (ingest.client.tus), without a server: where it keeps upload URLs and how it resumes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from ingest.client.tus import ResumableUpload, UploadUrls, state_path


def test_upload_urls_live_under_the_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert state_path() == tmp_path / "ingest" / "tus-uploads.json"


def test_upload_urls_are_remembered_then_forgotten(tmp_path: Path) -> None:
    urls = UploadUrls(tmp_path / "state" / "tus.json")
    assert urls.get("k") is None
    urls.set("k", "http://x/files/1")
    urls.set("j", "http://x/files/2")
    assert UploadUrls(tmp_path / "state" / "tus.json").get("k") == "http://x/files/1"
    urls.set("k", None)
    assert json.loads((tmp_path / "state" / "tus.json").read_text()) == {"j": "http://x/files/2"}


class Progress:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, done: int, total: int) -> None:
        self.n = done


def test_a_known_upload_resumes_from_the_server_offset(tmp_path: Path) -> None:
    """A mock transport stands in for the server: the client must HEAD, then PATCH the rest."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    seen: list[tuple[str, str, bytes]] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.headers.get("upload-offset", ""), request.read()))
        if request.method == "HEAD":
            return httpx.Response(200, headers={"upload-offset": "4", "upload-length": "10"})
        if request.method == "PATCH":
            return httpx.Response(204, headers={"upload-offset": "10", "ingest-file-id": "f" * 32})
        return httpx.Response(200, json={"sha256": hashlib.sha256(b"0123456789").hexdigest()})

    client = httpx.Client(base_url="http://server", transport=httpx.MockTransport(server))
    urls = UploadUrls(tmp_path / "state.json")
    progress = Progress()
    upload = ResumableUpload(client, path, urls=urls, progress=progress)
    urls.set(upload.key, "http://server/files/abc")
    upload.run()
    assert [(method, offset) for method, offset, _ in seen] == [("HEAD", ""), ("PATCH", "4"), ("GET", "")]
    assert seen[1][2] == b"456789"
    assert progress.n == 10
    assert urls.get(upload.key) is None
