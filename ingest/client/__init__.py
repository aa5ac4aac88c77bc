"""A Python client for an ingest server, built on httpx; the `ingest` CLI is made of it.

    from ingest.client import Client

    with Client("http://127.0.0.1:8000", token="...") as ingest:
        stored = ingest.upload("video.mp4", progress=lambda done, total: print(done, total))
        print(stored.id, stored.sha256)          # sha256 already checked against the local bytes
        big = ingest.upload_resumable("disk.img")  # tus: call again after Ctrl-C to resume
        for item in ingest.list():               # every page, newest first
            print(item.filename, item.size)
        ingest.download(stored.id, "copy.mp4")   # resumes, verifies, never overwrites silently
        ingest.delete(stored.id)

Failures raise ClientError (`.status`, `.code`); a hash that does not match raises
ChecksumMismatch, a download onto a different existing file DestinationExists.
"""

from __future__ import annotations

from ingest.client.api import Client, Progress, RemoteFile
from ingest.client.errors import ChecksumMismatch, ClientError, DestinationExists
from ingest.client.tus import TusError

__all__ = ["ChecksumMismatch", "Client", "ClientError", "DestinationExists", "Progress", "RemoteFile",
           "TusError"]
