"""Resumable uploads on S3 (real Ceph): chunks of one part, a short tail carried into the next
session, rollback, assembly by multipart copy, and one writing session across nodes
(PostgreSQL advisory locks)."""

from __future__ import annotations

import hashlib
import os

import pytest

from ingest.storage.base import PartialBusy, ResumableStorage
from ingest.storage.s3 import MIN_PART_SIZE, S3Storage
from ingest.storage.s3_partials import S3Partials
from ingest.storage.session_locks import FileSessionLocks, PostgresSessionLocks
from tests.backends import Ceph, multipart_uploads, object_keys, object_sha256

MiB = 1024 * 1024
UPLOAD_ID = "0123456789abcdef0123456789abcdef"
BLOB_ID = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def locks(postgres_url: str) -> PostgresSessionLocks:
    session_locks = PostgresSessionLocks(postgres_url)
    yield session_locks  # type: ignore[misc]
    session_locks.close()


def partials_for(ceph: Ceph, bucket: str, locks: PostgresSessionLocks) -> S3Partials:
    storage = S3Storage(ceph.client(), bucket, part_size=MIN_PART_SIZE, parts_in_flight=2,
                        max_file_size=1024**3)
    return S3Partials(storage, locks)


def append(partials: S3Partials, content: bytes) -> None:
    writer = partials.open_partial(UPLOAD_ID)
    for start in range(0, len(content), MiB):
        writer.write(content[start:start + MiB])
    writer.close()


def test_s3_partials_implement_resumable_storage(ceph: Ceph, bucket: str, locks: PostgresSessionLocks) -> None:
    _: ResumableStorage = partials_for(ceph, bucket, locks)


def test_patches_of_any_size_add_up_and_assemble_into_one_object_with_its_sha256(
        ceph: Ceph, bucket: str, locks: PostgresSessionLocks) -> None:
    partials = partials_for(ceph, bucket, locks)
    partials.create_partial(UPLOAD_ID, {"n": 1})
    pieces = [os.urandom(size) for size in (3 * MiB, 1 * MiB + 7, 9 * MiB, 2 * MiB)]
    for piece in pieces:
        append(partials, piece)
    content = b"".join(pieces)
    assert partials.partial_state(UPLOAD_ID) == ({"n": 1}, len(content))
    assert b"".join(partials.read_partial(UPLOAD_ID, end=len(content), block_size=MiB)) == content
    assert b"".join(partials.read_partial(UPLOAD_ID, end=100, block_size=MiB)) == content[:100]
    # Every chunk but the last is one whole part: the tail was carried, not left behind.
    chunks = partials._manifest(UPLOAD_ID)
    assert [c["size"] for c in chunks[:-1]] == [MIN_PART_SIZE] * (len(chunks) - 1)
    chunk_keys = {c["key"] for c in chunks}
    assert {k for k in object_keys(ceph.client(), bucket) if "/chunk-" in k} == chunk_keys

    writer = partials.finish_partial(UPLOAD_ID)
    expected = hashlib.sha256(content).hexdigest()
    writer.record_sha256(expected)
    writer.commit(BLOB_ID)
    client = ceph.client()
    assert object_sha256(client, bucket, f"files/{BLOB_ID}") == expected
    assert client.head_object(Bucket=bucket, Key=f"files/{BLOB_ID}")["Metadata"] == {"sha256": expected}
    assert multipart_uploads(client, bucket) == []

    partials.terminate_partial(UPLOAD_ID, keep_state=True)
    assert partials.partial_state(UPLOAD_ID) == ({"n": 1}, 0)
    assert partials.partial_ids() == [UPLOAD_ID]
    partials.terminate_partial(UPLOAD_ID)
    assert partials.partial_ids() == []
    with pytest.raises(KeyError):
        partials.partial_state(UPLOAD_ID)


def test_rollback_discards_only_the_session_and_keeps_the_tail(
        ceph: Ceph, bucket: str, locks: PostgresSessionLocks) -> None:
    partials = partials_for(ceph, bucket, locks)
    partials.create_partial(UPLOAD_ID, {})
    first = os.urandom(2 * MiB)
    append(partials, first)
    writer = partials.open_partial(UPLOAD_ID)
    assert writer.offset == len(first)
    writer.write(os.urandom(8 * MiB))  # one full part stored, carrying the tail
    writer.rollback()
    writer.close()
    assert partials.partial_state(UPLOAD_ID)[1] == len(first)
    assert b"".join(partials.read_partial(UPLOAD_ID, end=len(first), block_size=MiB)) == first


def test_one_writing_session_per_upload_across_nodes(ceph: Ceph, bucket: str, locks: PostgresSessionLocks,
                                                     postgres_url: str) -> None:
    other_node_locks = PostgresSessionLocks(postgres_url)
    try:
        node_a = partials_for(ceph, bucket, locks)
        node_b = partials_for(ceph, bucket, other_node_locks)
        node_a.create_partial(UPLOAD_ID, {})
        writer = node_a.open_partial(UPLOAD_ID)
        with pytest.raises(PartialBusy):
            node_b.open_partial(UPLOAD_ID)
        writer.close()
        node_b.open_partial(UPLOAD_ID).close()  # released: the other node may write now
    finally:
        other_node_locks.close()


def test_file_session_locks_exclude_a_second_holder(tmp_path: object) -> None:
    from pathlib import Path

    session_locks = FileSessionLocks(Path(str(tmp_path)))
    release = session_locks.try_lock("a")
    assert release is not None
    assert session_locks.try_lock("a") is None
    assert session_locks.try_lock("b") is not None
    release()
    assert session_locks.try_lock("a") is not None
