"""`Client`: the HTTP API of an ingest server as Python calls, over httpx."""

from __future__ import annotations

import builtins
import hashlib
import io
import mimetypes
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import httpx

from ingest.client import download as downloads
from ingest.client.errors import ChecksumMismatch, raise_for_status
from ingest.client.tus import ResumableUpload, UploadUrls, state_path

DEFAULT_URL = "http://127.0.0.1:8000"
READ_SIZE = 1024 * 1024
# `progress(bytes_done, bytes_total)`: called as bytes move; the total is None when unknown.
Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class RemoteFile:
    """A stored file as the server describes it."""

    id: str
    filename: str
    size: int
    sha256: str
    content_type: str
    created_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    content_url: str = ""

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RemoteFile:
        return cls(id=body["id"], filename=body["filename"], size=int(body["size"]),
                   sha256=body["sha256"], content_type=body.get("content_type", ""),
                   created_at=body.get("created_at", ""), metadata=body.get("metadata") or {},
                   url=body.get("url", ""), content_url=body.get("content_url", ""))


class Client:
    """An ingest server, e.g. `Client("http://127.0.0.1:8000", token=...)`.

    Every upload is hashed locally while it is sent and the server's sha256 is checked
    against it (ChecksumMismatch otherwise); every download is checked against the catalog.
    Refusals raise ClientError with the server's status and error code. Use it as a context
    manager, or call close().
    """

    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None, tus_state: Path | None = None) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        # No read/write timeout: a large body takes as long as it takes, and the answer to
        # one comes only after the server's fsync.
        self.http = httpx.Client(base_url=url, headers=headers, transport=transport,
                                 timeout=httpx.Timeout(timeout, read=None, write=None))
        self.tus_state = tus_state or state_path()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def upload(self, source: str | os.PathLike[str] | IO[bytes], *, filename: str | None = None,
               content_type: str | None = None, progress: Progress | None = None) -> RemoteFile:
        """Store one file (a path or a binary file object) in one request (PUT /uploads/NAME).

        An interrupted upload stores nothing; see upload_resumable for files worth resuming.
        """
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            with path.open("rb") as opened:
                return self.upload(opened, filename=filename or path.name,
                                   content_type=content_type, progress=progress)
        name = filename or Path(str(getattr(source, "name", "") or "upload")).name
        size = _remaining_size(source)
        report = progress or (lambda done, total: None)
        local_hash = hashlib.sha256()

        def blocks() -> Iterator[bytes]:
            sent = 0
            report(0, size)
            while block := source.read(READ_SIZE):
                local_hash.update(block)
                sent += len(block)
                report(sent, size)
                yield block

        headers = {"content-type": content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"}
        if size is not None:
            headers["content-length"] = str(size)
        response = self.http.put("/uploads/" + quote(name, safe=""), content=blocks(), headers=headers)
        raise_for_status(response, 201)
        stored = RemoteFile.from_json(response.json()["files"][0])
        if stored.sha256 != local_hash.hexdigest():
            raise ChecksumMismatch(f"server stored sha256 {stored.sha256}, the local bytes hash to "
                                   f"{local_hash.hexdigest()}", code="sha256_mismatch")
        return stored

    def upload_resumable(self, path: str | os.PathLike[str], *, progress: Progress | None = None,
                         retries: int = 3) -> RemoteFile:
        """Store one file with tus (POST then PATCH /files/...). Calling it again for the same
        file after an interruption, even from another process, continues where it stopped."""
        upload = ResumableUpload(self.http, Path(path), urls=UploadUrls(self.tus_state),
                                 progress=progress, retries=retries)
        return RemoteFile.from_json(upload.run())

    def get(self, file_id: str) -> RemoteFile:
        response = self.http.get(f"/uploads/{quote(file_id, safe='')}")
        raise_for_status(response, 200)
        return RemoteFile.from_json(response.json())

    def download(self, file_id: str, destination: str | os.PathLike[str] | None = None, *,
                 force: bool = False, progress: Progress | None = None) -> Path:
        """Fetch a stored file to `destination` (default: its stored name in the current
        directory; a directory gets the stored name). Resumes an interrupted download of the
        same file, checks the sha256 before the file takes its name, and refuses to replace a
        different existing file unless `force`. Returns the path written."""
        stored = self.get(file_id)
        target = Path(destination) if destination is not None else Path(downloads.local_name(stored.filename))
        return downloads.download(self.http, stored, target, force=force, progress=progress)

    def delete(self, file_id: str) -> None:
        response = self.http.delete(f"/uploads/{quote(file_id, safe='')}")
        raise_for_status(response, 204)

    def create_link(self, **options: Any) -> builtins.dict[str, Any]:
        """A new upload link (admin token): `{"link": {...}, "secret": ..., "url": ...}`; the
        secret and URL are shown this once. Options as `POST /links` takes them: expires,
        max_size, max_files, accept, label, single_use."""
        response = self.http.post("/links", json=options)
        raise_for_status(response, 201)
        return dict(response.json())

    def links(self) -> builtins.list[builtins.dict[str, Any]]:
        """Every upload link, with its state and what it has used (admin token)."""
        response = self.http.get("/links")
        raise_for_status(response, 200)
        return list(response.json()["items"])

    def revoke_link(self, link_id: str) -> builtins.dict[str, Any]:
        """Revoke an upload link: it stops working at once (admin token)."""
        response = self.http.delete(f"/links/{quote(link_id, safe='')}")
        raise_for_status(response, 200)
        return dict(response.json())

    def list(self, *, limit: int | None = None, page_size: int = 1000) -> Iterator[RemoteFile]:
        """Stored files, newest first, every page (or the first `limit`)."""
        cursor: str | None = None
        seen = 0
        while limit is None or seen < limit:
            wanted = page_size if limit is None else min(page_size, limit - seen)
            params: builtins.dict[str, str | int] = {"limit": wanted}
            if cursor:
                params["cursor"] = cursor
            response = self.http.get("/uploads", params=params)
            raise_for_status(response, 200)
            page = response.json()
            for item in page["items"]:
                seen += 1
                yield RemoteFile.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _remaining_size(source: IO[bytes]) -> int | None:
    """Bytes left in a seekable file object; None for a pipe or a stream."""
    try:
        if not source.seekable():
            return None
        here = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(here)
        return end - here
    except (OSError, ValueError, AttributeError):
        return None
