"""S3Storage against a real Ceph radosgw: parts, commit with sha256 metadata, abort, sweep, reads."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ingest.errors import RangeNotSatisfiable
from ingest.storage.base import HasThreads, RecordsDigest, Storage, StreamedBlobs
from ingest.storage.s3 import MAX_CONNECTIONS, MAX_PARTS, MIN_PART_SIZE, S3Storage, effective_part_size
from tests.backends import Ceph, multipart_uploads, object_keys, object_sha256

MiB = 1024 * 1024
BLOB_ID = "0123456789abcdef0123456789abcdef"


_started: list[S3Storage] = []


@pytest.fixture(autouse=True)
def _stop_storages() -> Iterator[None]:
    yield
    while _started:
        _started.pop().stop()


def storage_for(ceph: Ceph, bucket: str, *, part_size: int = MIN_PART_SIZE,
                parts_in_flight: int = 2) -> S3Storage:
    """A started storage (its part threads exist), stopped after the test."""
    storage = S3Storage(ceph.client(), bucket, part_size=part_size, parts_in_flight=parts_in_flight,
                        max_file_size=1024**3)
    storage.start(writers=4)
    _started.append(storage)
    return storage


def write_blob(storage: S3Storage, size: int) -> tuple[Any, str]:
    writer = storage.create()
    digest = hashlib.sha256()
    block = os.urandom(MiB)
    written = 0
    while written < size:
        piece = block[: min(MiB, size - written)]
        writer.write(bytearray(piece))
        digest.update(piece)
        written += len(piece)
    writer.record_sha256(digest.hexdigest())
    return writer, digest.hexdigest()


@pytest.mark.parametrize(("part_size", "max_file_size", "expected"), [
    (8 * MiB, 64 * 1024**3, 8 * MiB),          # 64 GiB fits in 8,192 parts of 8 MiB
    (8 * MiB, 1024**4, 105 * MiB),             # 1 TiB needs parts of 104.9 MiB, rounded up
    (1 * MiB, 1024**2, MIN_PART_SIZE),         # never under S3's minimum
])
def test_part_size_is_raised_so_the_largest_file_fits_in_10000_parts(
        part_size: int, max_file_size: int, expected: int) -> None:
    chosen = effective_part_size(part_size, max_file_size)
    assert chosen == expected
    assert chosen * MAX_PARTS >= max_file_size


def test_s3_storage_implements_the_storage_protocols(ceph: Ceph, bucket: str) -> None:
    storage: Storage = storage_for(ceph, bucket)
    assert isinstance(storage, StreamedBlobs)
    assert isinstance(storage.create(), RecordsDigest)


def test_a_blob_smaller_than_a_part_is_one_object_with_its_sha256_as_metadata(
        ceph: Ceph, bucket: str) -> None:
    storage = storage_for(ceph, bucket)
    writer, sha = write_blob(storage, 3 * MiB + 17)
    writer.commit(BLOB_ID)
    client = ceph.client()
    assert object_keys(client, bucket) == [f"files/{BLOB_ID}"]
    assert client.head_object(Bucket=bucket, Key=f"files/{BLOB_ID}")["Metadata"] == {"sha256": sha}
    assert object_sha256(client, bucket, f"files/{BLOB_ID}") == sha
    assert multipart_uploads(client, bucket) == []


def test_a_blob_of_several_parts_commits_whole_and_leaves_nothing_incoming(
        ceph: Ceph, bucket: str) -> None:
    storage = storage_for(ceph, bucket)
    writer, sha = write_blob(storage, 12 * MiB + 5)  # two 5 MiB parts and a short last one
    client = ceph.client()
    assert object_keys(client, bucket) == []  # invisible until committed
    writer.commit(BLOB_ID)
    assert object_keys(client, bucket) == [f"files/{BLOB_ID}"]
    head = client.head_object(Bucket=bucket, Key=f"files/{BLOB_ID}")
    assert head["Metadata"] == {"sha256": sha}
    assert head["ContentLength"] == 12 * MiB + 5
    assert object_sha256(client, bucket, f"files/{BLOB_ID}") == sha
    assert multipart_uploads(client, bucket) == []
    assert storage.exists(BLOB_ID) and storage.blob_ids(older_than=0) == [BLOB_ID]


def test_abort_leaves_no_multipart_upload_and_no_object(ceph: Ceph, bucket: str) -> None:
    storage = storage_for(ceph, bucket)
    writer, _ = write_blob(storage, 11 * MiB)
    client = ceph.client()
    assert len(multipart_uploads(client, bucket)) == 1
    writer.abort()
    writer.abort()  # twice is harmless
    assert multipart_uploads(client, bucket) == []
    assert object_keys(client, bucket) == []


def test_no_more_parts_than_parts_in_flight_are_sent_at_once(ceph: Ceph, bucket: str) -> None:
    storage = storage_for(ceph, bucket, parts_in_flight=2)
    real_upload_part = storage.client.upload_part
    sending = 0
    most = 0
    lock = threading.Lock()

    def slow_upload_part(**request: Any) -> Any:
        nonlocal sending, most
        with lock:
            sending += 1
            most = max(most, sending)
        try:
            time.sleep(0.2)  # parts pile up if the writer does not wait for a free slot
            return real_upload_part(**request)
        finally:
            with lock:
                sending -= 1

    storage.client.upload_part = slow_upload_part
    writer, sha = write_blob(storage, 31 * MiB)
    writer.commit(BLOB_ID)
    assert most == 2
    assert object_sha256(ceph.client(), bucket, f"files/{BLOB_ID}") == sha


def test_part_threads_are_made_by_start_sized_for_the_writers_and_ended_by_stop(ceph: Ceph, bucket: str) -> None:
    storage = S3Storage(ceph.client(), bucket, part_size=MIN_PART_SIZE, parts_in_flight=2, max_file_size=1024**3)
    assert isinstance(storage, HasThreads)
    with pytest.raises(RuntimeError, match="start"):
        _ = storage.part_threads
    storage.start(writers=3)
    threads = storage.part_threads
    assert threads._max_workers == 6  # every part of 3 writers in flight at once
    storage.stop()
    with pytest.raises(RuntimeError):
        threads.submit(print)  # shut down
    storage.start(writers=1000)
    assert storage.part_threads._max_workers == MAX_CONNECTIONS  # no more than the client's connections
    storage.stop()


def test_sweep_aborts_abandoned_multipart_uploads(ceph: Ceph, bucket: str) -> None:
    storage = storage_for(ceph, bucket)
    write_blob(storage, 6 * MiB)  # a writer that died: never committed nor aborted
    client = ceph.client()
    assert storage.sweep_temporary(older_than=3600) == 0
    assert len(multipart_uploads(client, bucket)) == 1
    assert storage.sweep_temporary(older_than=0) == 1
    assert multipart_uploads(client, bucket) == []


def test_reads_stream_ranges_and_refuse_ranges_outside_the_blob(ceph: Ceph, bucket: str) -> None:
    storage = storage_for(ceph, bucket)
    writer = storage.create()
    writer.write(b"0123456789")
    writer.record_sha256(hashlib.sha256(b"0123456789").hexdigest())
    writer.commit(BLOB_ID)
    whole = storage.open_stream(BLOB_ID, byte_range=None)
    assert (whole.length, whole.content_range, whole.read(100)) == (10, None, b"0123456789")
    whole.close()
    part = storage.open_stream(BLOB_ID, byte_range="bytes=2-4")
    assert (part.length, part.content_range, part.read(100)) == (3, "bytes 2-4/10", b"234")
    part.close()
    with pytest.raises(RangeNotSatisfiable):
        storage.open_stream(BLOB_ID, byte_range="bytes=50-60")
    with pytest.raises(FileNotFoundError):
        storage.open_stream("f" * 32, byte_range=None)
