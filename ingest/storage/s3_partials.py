"""Partial (resumable, tus) uploads on S3, shared by every node.

Under `partials/<upload_id>/`: `state.json` (the tus service's state), `manifest.json` (the
chunks stored so far, in order, with their sizes: the offset is their sum) and the chunk
objects. Every chunk but the last is exactly one part (`part_size`), so a finished upload
becomes one object by a multipart copy inside the store (UploadPartCopy, one part per chunk),
with its SHA-256 as metadata. Chunks are plain objects, not parts of an open multipart upload,
because S3 cannot read the parts of an unfinished upload, and a node that resumes an upload
must re-read its bytes to rebuild the running SHA-256.

A short last chunk (the tail: under one part) is read back and re-sent with the next PATCH's
first bytes, as tusd's s3store does with its "incomplete part"; it is deleted only once the
manifest no longer names it. The manifest is rewritten after each full part is stored, so a
node killed mid-PATCH loses at most the part it was sending: the offset another node reports
is always backed by stored bytes. A chunk object the manifest does not name (a node killed
between storing a part and rewriting the manifest, or before deleting the old tail) is deleted
by the next session, which alone may write the upload.

One writing session per upload across all nodes: `open_partial` takes a lock from a
`SessionLocks` (PostgreSQL advisory locks when the catalog is PostgreSQL; see app.py) and
raises PartialBusy when another process holds it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from ingest import crashpoints
from ingest.storage.base import PartialBusy, is_storage_id

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef
from ingest.storage.s3 import SHA256_METADATA, S3Storage, os_error, translated

PARTIALS = "partials/"


class SessionLocks(Protocol):
    def try_lock(self, name: str) -> Callable[[], None] | None:
        """Take the exclusive lock `name` without waiting; return its release, or None when
        another holder has it."""


class S3Partials:
    def __init__(self, storage: S3Storage, locks: SessionLocks) -> None:
        self._storage = storage
        self._client = storage.client
        self._bucket = storage.bucket
        self._locks = locks

    def _prefix(self, upload_id: str) -> str:
        if not is_storage_id(upload_id):
            raise KeyError(upload_id)
        return f"{PARTIALS}{upload_id}/"

    def _get_json(self, key: str) -> Any:
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise os_error(error) from error
        return json.loads(body)

    def _put_json(self, key: str, value: Any) -> None:
        with translated():
            self._client.put_object(Bucket=self._bucket, Key=key,
                                    Body=json.dumps(value, separators=(",", ":")).encode())

    def _manifest(self, upload_id: str) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = self._get_json(self._prefix(upload_id) + "manifest.json")["chunks"]
        return chunks

    def create_partial(self, upload_id: str, state: dict[str, Any]) -> None:
        self._put_json(self._prefix(upload_id) + "manifest.json", {"chunks": []})
        self.save_partial_state(upload_id, state)

    def partial_state(self, upload_id: str) -> tuple[dict[str, Any], int]:
        with translated():
            state: dict[str, Any] = self._get_json(self._prefix(upload_id) + "state.json")
            try:
                offset = sum(chunk["size"] for chunk in self._manifest(upload_id))
            except KeyError:  # a finished upload's record keeps only its state
                offset = 0
        return state, offset

    def save_partial_state(self, upload_id: str, state: dict[str, Any]) -> None:
        self._put_json(self._prefix(upload_id) + "state.json", state)  # a PUT replaces atomically

    def open_partial(self, upload_id: str) -> S3PartialWriter:
        prefix = self._prefix(upload_id)
        release = self._locks.try_lock(upload_id)
        if release is None:
            raise PartialBusy(upload_id)
        try:
            with translated():
                chunks = self._manifest(upload_id)
                named = {chunk["key"] for chunk in chunks}
                for page in self._client.get_paginator("list_objects_v2").paginate(
                        Bucket=self._bucket, Prefix=prefix + "chunk-"):
                    for obj in page.get("Contents", []):
                        if obj["Key"] not in named:
                            self._client.delete_object(Bucket=self._bucket, Key=obj["Key"])
                return S3PartialWriter(self, prefix, chunks, release)
        except BaseException:
            release()
            raise

    def read_chunk(self, key: str) -> bytes:
        with translated():
            return bytes(self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read())

    def read_partial(self, upload_id: str, *, end: int, block_size: int) -> Iterator[bytes]:
        remaining = end
        for chunk in self._manifest(upload_id):
            if remaining <= 0:
                return
            with translated():
                body = self._client.get_object(Bucket=self._bucket, Key=chunk["key"])["Body"]
            try:
                while remaining > 0 and (block := body.read(min(block_size, remaining))):
                    remaining -= len(block)
                    yield block
            finally:
                body.close()

    def finish_partial(self, upload_id: str) -> S3PartialBlobWriter:
        return S3PartialBlobWriter(self._storage, self._manifest(upload_id))

    def terminate_partial(self, upload_id: str, *, keep_state: bool = False) -> None:
        prefix = self._prefix(upload_id)
        with translated():
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self._bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if not (keep_state and obj["Key"] == prefix + "state.json"):
                        self._client.delete_object(Bucket=self._bucket, Key=obj["Key"])

    def partial_ids(self) -> list[str]:
        found = []
        with translated():
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self._bucket, Prefix=PARTIALS):
                for obj in page.get("Contents", []):
                    upload_id, _, name = obj["Key"].removeprefix(PARTIALS).partition("/")
                    if name == "state.json" and is_storage_id(upload_id):
                        found.append(upload_id)
        return found

    def sweep_staging(self, *, older_than: float) -> int:
        return 0  # a PUT replaces a state atomically: there is nothing to stage


class S3PartialWriter:
    """One writing session: buffers a part, stores full parts as chunks as they fill."""

    def __init__(self, partials: S3Partials, prefix: str, chunks: list[dict[str, Any]],
                 release: Callable[[], None]) -> None:
        self._partials = partials
        self._client = partials._client
        self._bucket = partials._bucket
        self._part_size = partials._storage.part_size
        self._prefix = prefix
        self._initial = list(chunks)
        self._release: Callable[[], None] | None = release
        self.offset = sum(chunk["size"] for chunk in chunks)
        self._start()

    def _start(self) -> None:
        """A last chunk under one part is carried into this session's first part."""
        self._chunks = list(self._initial)
        self._created: list[str] = []  # chunk keys written by this session
        self._received = 0  # bytes written by this session
        self._tail_key: str | None = None
        self._buffer = bytearray()
        if self._chunks and self._chunks[-1]["size"] < self._part_size:
            tail = self._chunks.pop()
            self._tail_key = tail["key"]
            self._buffer = bytearray(self._partials.read_chunk(tail["key"]))

    def write(self, block: bytes | bytearray) -> None:
        assert self._release is not None, "write after close"
        self._buffer += block
        self._received += len(block)
        while len(self._buffer) >= self._part_size:
            part, self._buffer = self._buffer[: self._part_size], self._buffer[self._part_size:]
            self._store(part)

    def _store(self, part: bytearray) -> None:
        key = f"{self._prefix}chunk-{len(self._chunks):05d}-{secrets.token_hex(4)}"
        with translated():
            self._client.put_object(Bucket=self._bucket, Key=key, Body=bytes(part))
        crashpoints.reached("s3.chunk_stored")
        self._created.append(key)
        self._chunks.append({"key": key, "size": len(part)})
        # From here the manifest names the new chunk (which holds the old tail's bytes) and
        # no longer the old tail; the old tail object is deleted at close.
        self._partials._put_json(self._prefix + "manifest.json", {"chunks": self._chunks})

    def rollback(self) -> None:
        assert self._release is not None, "rollback after close"
        if self._created:
            self._partials._put_json(self._prefix + "manifest.json", {"chunks": self._initial})
            self._delete(self._created)
        self._start()

    def truncate(self, offset: int) -> None:
        """Cut the stored bytes back to `offset`: chunks wholly past it go, the one it falls
        inside is replaced by its first bytes (a new tail under one part)."""
        assert self._release is not None and not self._received, "truncate after a write"
        kept: list[dict[str, Any]] = []
        dropped: list[str] = []
        position = 0
        for chunk in self._initial:
            if position + chunk["size"] <= offset:
                kept.append(chunk)
            else:
                dropped.append(chunk["key"])
                if position < offset:
                    head = self._partials.read_chunk(chunk["key"])[: offset - position]
                    key = f"{self._prefix}chunk-{len(kept):05d}-{secrets.token_hex(4)}"
                    with translated():
                        self._client.put_object(Bucket=self._bucket, Key=key, Body=head)
                    kept.append({"key": key, "size": len(head)})
            position += chunk["size"]
        self._partials._put_json(self._prefix + "manifest.json", {"chunks": kept})
        self._delete(dropped)
        self._initial = kept
        self.offset = offset
        self._start()

    def sync(self) -> None:
        assert self._release is not None, "sync after close"
        if self._received:
            if self._buffer:
                self._store(self._buffer)  # the new tail, under one part
                self._buffer = bytearray()
            if self._tail_key is not None:
                self._delete([self._tail_key])
                self._tail_key = None

    def close(self) -> None:
        if self._release is None:
            return
        try:
            self.sync()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            with translated(), contextlib.suppress(ClientError):
                self._client.delete_object(Bucket=self._bucket, Key=key)


class S3PartialBlobWriter:
    """A BlobWriter over a finished partial upload: commit assembles its chunks into
    `files/<blob_id>` by a multipart copy inside the store; the partial stays until the
    tus service terminates it, so a failed commit can be retried."""

    def __init__(self, storage: S3Storage, chunks: list[dict[str, Any]]) -> None:
        self._storage = storage
        self._client = storage.client
        self._bucket = storage.bucket
        self._chunks = chunks
        self._sha256: str | None = None
        self._key: str | None = None
        self._upload_id: str | None = None

    def record_sha256(self, sha256: str) -> None:
        self._sha256 = sha256

    def write(self, block: bytes | bytearray) -> None:
        raise AssertionError("a finished partial upload takes no more bytes")

    def commit(self, blob_id: str) -> None:
        if self._sha256 is None:
            raise ValueError("commit before the blob's sha256 was recorded")
        key = self._key = self._storage.key_of(blob_id)
        metadata = {SHA256_METADATA: self._sha256}
        with translated():
            if len(self._chunks) <= 1:
                if not self._chunks:
                    self._client.put_object(Bucket=self._bucket, Key=key, Body=b"", Metadata=metadata)
                else:
                    self._client.copy_object(
                        Bucket=self._bucket, Key=key, Metadata=metadata, MetadataDirective="REPLACE",
                        CopySource={"Bucket": self._bucket, "Key": self._chunks[0]["key"]})
                return
            upload_id = self._upload_id = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, Metadata=metadata)["UploadId"]
            parts: list[CompletedPartTypeDef] = []
            for number, chunk in enumerate(self._chunks, start=1):
                copied = self._client.upload_part_copy(
                    Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": self._bucket, "Key": chunk["key"]})
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
                crashpoints.reached("s3.part_uploaded")
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
            self._upload_id = None

    def abort(self) -> None:
        with translated():
            if self._upload_id is not None and self._key is not None:
                with contextlib.suppress(ClientError):
                    self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key,
                                                        UploadId=self._upload_id)
                self._upload_id = None
