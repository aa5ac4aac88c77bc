"""S3-compatible object storage (AWS S3, Ceph RGW, MinIO) with boto3, called from worker threads.

A blob streams into an S3 multipart upload under `incoming/<token>` as it arrives: blocks are
gathered into parts of `part_size`, and each full part is sent by the storage's part threads
(made by `start` and ended by `stop`, with the upload service) while the next one fills. At
most `parts_in_flight` parts of one writer are being sent; past that, `write` blocks its
worker thread, the sink's lane fills, and the client is pushed back — so memory per upload
stays <= part_size x (parts_in_flight + 1), whatever the file size. Nothing touches local disk.

An in-progress multipart upload is invisible to readers, like a temp file. `commit` completes
it and copies the object to `files/<blob_id>` with its SHA-256 as metadata (S3 has no rename,
and metadata can only be set when an object is written); the copy stays inside the store. A
blob smaller than one part never starts a multipart upload: it is one PutObject at commit.
Failures abort the multipart upload (AbortMultipartUpload) and delete the incoming object;
whatever a crash leaves under `incoming/` is swept by age.

Ceph 16 quirks handled here: path-style addressing; CompleteMultipartUpload's ETag is empty
(never used); boto3 cannot send a non-seekable part body, so parts are sent as bytes.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ingest import crashpoints
from ingest.errors import RangeNotSatisfiable
from ingest.storage.base import BlobStream, is_storage_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef
else:
    S3Client = Any

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum part count of one multipart upload
MAX_COPY_SIZE = 5 * 1024 * MiB  # largest single CopyObject; beyond, the copy is multipart
SHA256_METADATA = "sha256"  # sent as x-amz-meta-sha256
INCOMING = "incoming/"
FILES = "files/"

MAX_CONNECTIONS = 64  # the client's connection pool: more part threads would wait for one

# Ceph and other non-AWS stores do not accept the flexible checksums botocore sends by
# default since 1.36; the payload is not hashed a second time for the signature either
# (the server hashes each upload inline already, and TLS protects bytes in transit).
_CLIENT_CONFIG = Config(
    s3={"addressing_style": "path", "payload_signing_enabled": False},
    signature_version="s3v4",
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    max_pool_connections=MAX_CONNECTIONS,
    retries={"max_attempts": 5, "mode": "standard"},
)


def make_client(*, endpoint: str, region: str, access_key: str, secret_key: str) -> S3Client:
    client: S3Client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint or None, region_name=region, config=_CLIENT_CONFIG,
        aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None)
    return client


def effective_part_size(part_size: int, max_file_size: int) -> int:
    """The configured part size, raised (to whole MiB) so the largest accepted file fits in
    10,000 parts, and never under S3's 5 MiB minimum."""
    needed = -(-max_file_size // MAX_PARTS)
    needed = -(-needed // MiB) * MiB
    return max(part_size, needed, MIN_PART_SIZE)


class S3Storage:
    def __init__(self, client: S3Client, bucket: str, *, part_size: int, parts_in_flight: int,
                 max_file_size: int) -> None:
        self.client = client
        self.bucket = bucket
        self.part_size = effective_part_size(part_size, max_file_size)
        self.parts_in_flight = max(1, parts_in_flight)
        # Shared by all writers; each writer is limited to its own parts_in_flight by a semaphore.
        self._part_threads: ThreadPoolExecutor | None = None

    def start(self, *, writers: int) -> None:
        """Make the part threads: enough for `writers` blobs with all their parts in flight,
        up to the client's connections."""
        self._part_threads = ThreadPoolExecutor(
            max_workers=max(1, min(writers * self.parts_in_flight, MAX_CONNECTIONS)),
            thread_name_prefix="ingest-s3")

    def stop(self) -> None:
        """End the part threads, once no writer is sending (after the last request)."""
        threads, self._part_threads = self._part_threads, None
        if threads is not None:
            threads.shutdown(wait=True)

    @property
    def part_threads(self) -> ThreadPoolExecutor:
        if self._part_threads is None:
            raise RuntimeError("S3Storage.start() was not called: no threads to send parts")
        return self._part_threads

    def create(self) -> S3BlobWriter:
        key = f"{INCOMING}{time.time_ns()}-{secrets.token_hex(8)}"
        return S3BlobWriter(self, key)

    def key_of(self, blob_id: str) -> str:
        if not is_storage_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return FILES + blob_id

    def exists(self, blob_id: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_of(blob_id))
        except ClientError as error:
            if _status(error) == 404:
                return False
            raise os_error(error) from error
        return True

    def delete(self, blob_id: str) -> None:
        with translated():
            self.client.delete_object(Bucket=self.bucket, Key=self.key_of(blob_id))

    def blob_ids(self, *, older_than: float) -> list[str]:
        cutoff = time.time() - older_than
        return [obj["Key"].removeprefix(FILES) for obj in self._objects(FILES)
                if obj["LastModified"].timestamp() <= cutoff]

    def sweep_temporary(self, *, older_than: float) -> int:
        """Abort multipart uploads and delete incoming objects older than `older_than`.
        Age is the only test: writers may live on other nodes. Multipart uploads are looked
        for under `files/` too: a finished tus upload is copied there part by part, and a
        crash in the middle leaves that copy open."""
        cutoff = time.time() - older_than
        removed = 0
        with translated():
            for prefix in (INCOMING, FILES):
                for page in self.client.get_paginator("list_multipart_uploads").paginate(
                        Bucket=self.bucket, Prefix=prefix):
                    for upload in page.get("Uploads", []):
                        if upload["Initiated"].timestamp() <= cutoff:
                            self.client.abort_multipart_upload(
                                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                            removed += 1
            for obj in self._objects(INCOMING):
                if obj["LastModified"].timestamp() <= cutoff:
                    self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                    removed += 1
        return removed

    def _objects(self, prefix: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        with translated():
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix):
                found += [dict(obj) for obj in page.get("Contents", [])]
        return found

    # --- StreamedBlobs ---------------------------------------------------------------------

    def open_stream(self, blob_id: str, *, byte_range: str | None) -> BlobStream:
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_of(blob_id)}
        if byte_range is not None:
            request["Range"] = byte_range
        try:
            response = self.client.get_object(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(blob_id) from None
            if code == "InvalidRange" or _status(error) == 416:
                raise RangeNotSatisfiable("the Range lies outside the file") from None
            raise os_error(error) from error
        body = response["Body"]
        return BlobStream(length=int(response["ContentLength"]),
                          content_range=response.get("ContentRange"),
                          read=body.read, close=body.close)

    def presigned_url(self, blob_id: str, *, expires_seconds: int, content_type: str,
                      content_disposition: str) -> str:
        # Response header overrides are part of the signed query (S3 GetObject
        # response-content-type / response-content-disposition).
        url: str = self.client.generate_presigned_url(
            "get_object", ExpiresIn=expires_seconds,
            Params={"Bucket": self.bucket, "Key": self.key_of(blob_id),
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": content_disposition})
        return url


class S3BlobWriter:
    """One blob on its way into S3. `write`, `commit` and `abort` are called from worker
    threads, one at a time; part uploads run on the storage's part threads."""

    def __init__(self, storage: S3Storage, key: str) -> None:
        self._storage = storage
        self._client = storage.client
        self._bucket = storage.bucket
        self.key = key
        self.upload_id: str | None = None
        self._buffer = bytearray()
        self._parts_sent = 0
        self._etags: dict[int, str] = {}  # part number -> ETag, filled by the part threads
        self._sending: list[Future[None]] = []  # at most parts_in_flight not yet done
        self._part_error: BaseException | None = None
        self._slots = threading.BoundedSemaphore(storage.parts_in_flight)
        self._sha256: str | None = None
        self._size = 0
        self._completed = False
        self._finished = False

    def record_sha256(self, sha256: str) -> None:
        self._sha256 = sha256

    def write(self, block: bytes | bytearray) -> None:
        assert not self._finished, "write after commit or abort"
        self._raise_failed_part()
        self._buffer += block
        self._size += len(block)
        part_size = self._storage.part_size
        while len(self._buffer) >= part_size:
            # Hand over exactly one part; whatever is beyond starts the next one.
            if len(self._buffer) == part_size:
                part, self._buffer = self._buffer, bytearray()
            else:
                part, self._buffer = self._buffer[:part_size], self._buffer[part_size:]
            self._send_part(part)

    def _send_part(self, part: bytearray) -> None:
        if self.upload_id is None:
            with translated():
                self.upload_id = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self.key)["UploadId"]
        # Blocks this worker thread while parts_in_flight parts are being sent: backpressure.
        self._slots.acquire()
        self._parts_sent += 1
        try:
            future = self._storage.part_threads.submit(self._upload_part, self._parts_sent, part)
        except BaseException:
            self._slots.release()
            raise
        self._sending = [f for f in self._sending if not f.done()] + [future]

    def _upload_part(self, part_number: int, part: bytearray) -> None:
        try:
            with translated():
                response = self._client.upload_part(
                    Bucket=self._bucket, Key=self.key, UploadId=str(self.upload_id),
                    PartNumber=part_number,
                    # botocore sends any bytes-like body as is; bytes(part) would copy a part.
                    Body=cast(bytes, part))
            self._etags[part_number] = str(response["ETag"])
            crashpoints.reached("s3.part_uploaded")
        except BaseException as error:
            self._part_error = self._part_error or error
            raise
        finally:
            self._slots.release()

    def _raise_failed_part(self) -> None:
        if self._part_error is not None:
            raise self._part_error

    def _wait_for_parts(self) -> None:
        wait(self._sending)
        self._sending = []

    def commit(self, blob_id: str) -> None:
        assert not self._finished, "commit after commit or abort"
        if self._sha256 is None:
            raise ValueError("commit before the blob's sha256 was recorded")
        final_key = self._storage.key_of(blob_id)
        metadata = {SHA256_METADATA: self._sha256}
        if self.upload_id is None:
            # Smaller than one part: one PutObject straight to its final key.
            with translated():
                self._client.put_object(Bucket=self._bucket, Key=final_key,
                                        Body=bytes(self._buffer), Metadata=metadata)
            self._buffer = bytearray()
            self._finished = True
            return
        if self._buffer:
            self._send_part(self._buffer)  # the last part may be under 5 MiB
            self._buffer = bytearray()
        self._wait_for_parts()
        self._raise_failed_part()
        parts: list[CompletedPartTypeDef] = [
            {"PartNumber": number, "ETag": self._etags[number]} for number in range(1, self._parts_sent + 1)]
        with translated():
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": parts})
            self._completed = True
            crashpoints.reached("s3.completed")
            # The copy happens inside the store (RGW shares the data of the copy); beyond
            # 5 GiB boto3 turns it into a multipart UploadPartCopy.
            self._client.copy(
                {"Bucket": self._bucket, "Key": self.key}, self._bucket, final_key,
                ExtraArgs={"Metadata": metadata, "MetadataDirective": "REPLACE"},
                Config=TransferConfig(multipart_threshold=MAX_COPY_SIZE,
                                      multipart_chunksize=MAX_COPY_SIZE // 5, max_concurrency=4))
            self._client.delete_object(Bucket=self._bucket, Key=self.key)
        self._finished = True

    def abort(self) -> None:
        self._finished = True
        self._buffer = bytearray()
        for future in self._sending:
            future.cancel()
        self._wait_for_parts()
        with translated():
            if self._completed:
                self._client.delete_object(Bucket=self._bucket, Key=self.key)
            elif self.upload_id is not None:
                with contextlib.suppress(ClientError):  # already aborted or gone
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=self.key, UploadId=self.upload_id)
        self.upload_id = None


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def os_error(error: ClientError | BotoCoreError) -> OSError:
    """S3 failures as OSError, which the sink reports as storage_error (or 507 when full)."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("QuotaExceeded", "EntityTooLarge", "InsufficientCapacity"):
            return OSError(errno.ENOSPC, f"object store refused the data: {code}")
        return OSError(errno.EIO, f"object store: {code or error}")
    return OSError(errno.EIO, f"object store unreachable: {error}")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise os_error(error) from error



def check_bucket(client: S3Client, bucket: str, *, endpoint: str) -> None:
    """Raise BackendUnavailable, in one line naming the bucket, unless `bucket` can be used."""
    from ingest.backends import BackendUnavailable

    where = endpoint or "AWS"
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        status = _status(error)
        if status == 404:
            raise BackendUnavailable(
                f"S3 bucket {bucket!r} does not exist at {where}: create it with "
                f"`ingest create-bucket` (same INGEST_S3_* settings)") from error
        if status == 403:
            raise BackendUnavailable(
                f"S3 bucket {bucket!r} at {where}: access denied (check INGEST_S3_ACCESS_KEY "
                "and INGEST_S3_SECRET_KEY)") from error
        raise BackendUnavailable(f"S3 bucket {bucket!r} at {where}: {error}") from error
    except BotoCoreError as error:
        raise BackendUnavailable(f"S3 bucket {bucket!r} at {where}: {error}") from error


def create_bucket(client: S3Client, bucket: str, *, region: str) -> bool:
    """Create `bucket`; False if it is there already (some stores, Ceph's among them, answer
    CreateBucket on an existing bucket of the same owner with success, so ask first)."""
    from ingest.backends import BackendUnavailable

    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as error:
        if _status(error) != 404:
            raise BackendUnavailable(f"S3 bucket {bucket!r}: {error}") from error
        # Outside us-east-1, AWS wants the region named again (other stores ignore it).
        options: dict[str, Any] = {}
        if region and region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            client.create_bucket(Bucket=bucket, **options)
        except ClientError as create_error:
            if create_error.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                return False  # created meanwhile by another node
            raise BackendUnavailable(f"cannot create S3 bucket {bucket!r}: {create_error}") from create_error
    except BotoCoreError as error:
        raise BackendUnavailable(f"cannot create S3 bucket {bucket!r}: {error}") from error
    return True
