"""Downloading one stored file to disk: resumable, verified, never clobbering by surprise.

The bytes go to a hidden `.NAME.ID.part` file beside the destination (same filesystem, so the
final rename is atomic), with the answer's ETag beside it in `.NAME.ID.part.etag`. A second
call after an interruption asks for the rest with `Range` + `If-Range` (RFC 9110 §13.1.5):
the server answers 206 if the file is the one whose first bytes we hold, 200 with all of it
otherwise. The whole file is hashed and checked against the catalog's sha256 before it is
renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from ingest.client.errors import ChecksumMismatch, ClientError, DestinationExists, raise_for_status

if TYPE_CHECKING:
    from ingest.client.api import RemoteFile

READ_SIZE = 1024 * 1024


def local_name(filename: str) -> str:
    """The stored name as a file name here: its last path segment, never `.`, `..` or empty."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name if name not in ("", ".", "..") else "download"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(READ_SIZE):
            digest.update(block)
    return digest.hexdigest()


def download(http: httpx.Client, stored: RemoteFile, destination: Path, *, force: bool = False,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Fetch `stored` to `destination` (a directory gets the stored name); the path written."""
    report = progress or (lambda done, total: None)
    if destination.is_dir():
        destination = destination / local_name(stored.filename)
    if destination.exists():
        if sha256_of(destination) == stored.sha256:
            report(stored.size, stored.size)
            return destination  # already there, byte for byte
        if not force:
            raise DestinationExists(f"{destination} exists and is a different file; "
                                    "use --force to replace it", code="destination_exists")
    partial = destination.with_name(f".{destination.name}.{stored.id}.part")
    tag_file = partial.with_name(partial.name + ".etag")
    digest = hashlib.sha256()
    offset = 0
    headers: dict[str, str] = {}
    if partial.exists() and tag_file.exists():
        with partial.open("rb") as source:
            while block := source.read(READ_SIZE):
                digest.update(block)
                offset += len(block)
        if 0 < offset < stored.size:
            headers = {"range": f"bytes={offset}-", "if-range": tag_file.read_text().strip()}
        elif offset > stored.size:  # not a prefix of this file: start again
            digest, offset = hashlib.sha256(), 0
    if offset < stored.size or offset == 0:
        with http.stream("GET", f"/uploads/{stored.id}/content", headers=headers) as response:
            if response.status_code == 206 and response.headers.get("content-range", "").startswith(
                    f"bytes {offset}-"):
                mode = "ab"
            else:
                raise_for_status(response, 200)
                digest, offset, mode = hashlib.sha256(), 0, "wb"
            etag = response.headers.get("etag")
            if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
                tag_file.write_text(etag)
            report(offset, stored.size)
            with partial.open(mode) as sink:
                for block in response.iter_bytes(READ_SIZE):
                    sink.write(block)
                    digest.update(block)
                    offset += len(block)
                    report(offset, stored.size)
                sink.flush()
                os.fsync(sink.fileno())
    if digest.hexdigest() != stored.sha256:
        _remove(partial, tag_file)
        raise ChecksumMismatch(f"downloaded bytes hash to {digest.hexdigest()}, the catalog has "
                               f"{stored.sha256}; nothing was kept", code="sha256_mismatch")
    _put_in_place(partial, destination, force=force)
    _remove(tag_file)
    return destination


def _put_in_place(partial: Path, destination: Path, *, force: bool) -> None:
    if force:
        os.replace(partial, destination)
        return
    # A hard link fails if the name appeared meanwhile: no file is overwritten unasked.
    try:
        os.link(partial, destination)
    except FileExistsError:
        raise DestinationExists(f"{destination} appeared during the download; the bytes are kept "
                                f"in {partial}", code="destination_exists") from None
    except OSError as error:  # a filesystem without hard links
        if destination.exists():
            raise ClientError(f"{destination}: {error}") from error
        os.replace(partial, destination)
        return
    partial.unlink()


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
