"""A small tus client over httpx that resumes across runs (`Client.upload_resumable`).

The upload URL of each file is remembered (by server, absolute path, size and modification
time) in a JSON file under the user's cache directory, so calling it again after Ctrl-C or a
dropped connection continues from the offset the server holds. Within one call, a dropped
connection is retried a few times from the server's offset.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from ingest.client.errors import ChecksumMismatch, ClientError, raise_for_status
from ingest.wire import TUS_VERSION

TUS = {"tus-resumable": TUS_VERSION}
READ_SIZE = 1024 * 1024
log = logging.getLogger("ingest.client")


def state_path() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ingest" / "tus-uploads.json"


class UploadUrls:
    """file fingerprint -> upload URL, in a small JSON file (rewritten atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        try:
            loaded: dict[str, str] = json.loads(self.path.read_text())
            return loaded
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def set(self, key: str, url: str | None) -> None:
        urls = self._load()
        if url is None:
            urls.pop(key, None)
        else:
            urls[key] = url
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(urls, indent=1))
        os.replace(staging, self.path)


class TusError(ClientError):
    pass


class ResumableUpload:
    """One file sent with tus; `progress(bytes_sent, size)` is called as bytes go out."""

    def __init__(self, client: httpx.Client, path: Path, *, urls: UploadUrls,
                 progress: Callable[[int, int], None] | None = None, retries: int = 3) -> None:
        self.client = client
        self.path = path
        self.urls = urls
        self.progress = progress or (lambda done, total: None)
        self.retries = retries
        stat = path.stat()
        self.size = stat.st_size
        self.key = f"{client.base_url}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        self._hash = hashlib.sha256()
        self._hashed = 0  # bytes of the file fed to _hash, always a prefix
        self._file_id: str | None = None

    def run(self) -> dict[str, Any]:
        """Upload (or finish uploading) the file; the stored file's JSON description."""
        url = self.urls.get(self.key)
        offset = self._offset(url) if url else None
        if url is None or offset is None:
            url, offset = self._create(), 0
            self.urls.set(self.key, url)
        attempt = 0
        file_id = self._file_id
        while file_id is None:
            try:
                file_id = self._send(url, offset)
            except httpx.TransportError as error:
                attempt += 1
                if attempt > self.retries:
                    raise
                log.warning("%s: %s; resuming", self.path, error)
                time.sleep(min(8, 2 ** (attempt - 1)))
                resumed = self._offset(url)
                if resumed is None:
                    raise TusError("the server no longer knows this upload; run again to restart",
                                   code="upload_gone") from error
                offset = resumed
                file_id = self._file_id
        self._hash_until(self.size)
        self.urls.set(self.key, None)
        response = self.client.get(f"/uploads/{file_id}")
        raise_for_status(response, 200)
        stored: dict[str, Any] = response.json()
        if stored["sha256"] != self._hash.hexdigest():
            raise ChecksumMismatch(f"server stored sha256 {stored['sha256']}, local file has "
                                   f"{self._hash.hexdigest()}", code="sha256_mismatch")
        return stored

    def _offset(self, url: str) -> int | None:
        """The server's offset, or None when it forgot the upload (expired, deleted)."""
        response = self.client.head(url, headers=TUS)
        if response.status_code in (404, 410):
            return None
        _check(response, 200)
        self._file_id = response.headers.get("ingest-file-id")
        offset = int(response.headers["upload-offset"])
        self.progress(offset, self.size)
        return offset

    def _create(self) -> str:
        media_type = mimetypes.guess_type(self.path.name)[0] or "application/octet-stream"
        metadata = ",".join(f"{key} {base64.b64encode(value.encode()).decode()}"
                            for key, value in (("filename", self.path.name), ("filetype", media_type)))
        response = self.client.post("/files/", headers={
            **TUS, "upload-length": str(self.size), "upload-metadata": metadata})
        _check(response, 201)
        self._file_id = response.headers.get("ingest-file-id")  # an empty file is done at once
        return str(httpx.URL(str(self.client.base_url)).join(response.headers["location"]))

    def _send(self, url: str, offset: int) -> str:
        """PATCH the rest of the file from `offset`; the stored file's id."""
        self._hash_until(offset)
        response = self.client.patch(url, content=self._blocks(offset), headers={
            **TUS, "upload-offset": str(offset), "content-type": "application/offset+octet-stream",
            "content-length": str(self.size - offset)})
        _check(response, 204)
        return response.headers["ingest-file-id"]

    def _blocks(self, offset: int) -> Iterator[bytes]:
        with self.path.open("rb") as source:
            source.seek(offset)
            while block := source.read(READ_SIZE):
                if self._hashed == offset:
                    self._hash.update(block)
                    self._hashed += len(block)
                offset += len(block)
                self.progress(offset, self.size)
                yield block

    def _hash_until(self, end: int) -> None:
        """Bring the local hash of the file's prefix up to `end` (it may already be past it:
        the same bytes, sent before a connection dropped)."""
        with self.path.open("rb") as source:
            source.seek(self._hashed)
            while self._hashed < end and (block := source.read(min(READ_SIZE, end - self._hashed))):
                self._hash.update(block)
                self._hashed += len(block)


def _check(response: httpx.Response, status: int) -> None:
    try:
        raise_for_status(response, status)
    except ClientError as error:
        raise TusError(f"{response.request.method} {response.request.url}: {error}",
                       status=error.status, code=error.code) from None
