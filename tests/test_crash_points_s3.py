"""The crash points of the S3 commit sequences against a real Ceph (radosgw), as the scale-out
tests run it: a server on S3 killed right after each step, restarted, every invariant of
tests/crashes.py checked in the bucket itself (no multipart upload, no incoming object, no
chunk the manifest does not name, files/ and the catalog in agreement)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.backends import Ceph
from tests.conftest import stop_server
from tests.crashes import (
    Expectations,
    TusUploadRecord,
    check_after_restart,
    past_the_age_rule,
    start,
    tus_create,
    tus_patch,
    wait_for_crash,
)

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part: a few MiB exercise every step


def s3_env(ceph: Ceph, bucket: str) -> dict[str, str]:
    return {**ceph.settings_env(bucket), "INGEST_S3_PART_SIZE": str(PART)}


@pytest.mark.parametrize(("crash_at", "stored"), [
    ("s3.part_uploaded:2", False),  # a multipart upload open under incoming/
    ("s3.completed", False),  # a whole object under incoming/, not yet copied
    ("blob.committed", False),  # files/<id> without a row
    ("rows.inserted", True),
])
def test_a_raw_put_to_s3_cut_after_each_step_is_stored_whole_or_not_at_all(
        tmp_path: Path, ceph: Ceph, bucket: str, crash_at: str, stored: bool) -> None:
    data_dir = tmp_path / "data"
    server = start(data_dir, "--no-fsync", crash_at=crash_at, env=s3_env(ceph, bucket))
    content = os.urandom(2 * PART + 12345)
    with pytest.raises(httpx.TransportError):
        httpx.put(server.url + "/uploads/raw.bin", content=content, timeout=60)
    wait_for_crash(server, crash_at.partition(":")[0])
    past_the_age_rule(time.time())
    restarted = start(data_dir, "--no-fsync", env=s3_env(ceph, bucket))
    try:
        files = check_after_restart(restarted, Expectations(sent_whole={hashlib.sha256(content).hexdigest()}),
                                    s3=(ceph.client(), bucket))
        assert len(files) == (1 if stored else 0)
    finally:
        stop_server(restarted)


# The upload below: 17 MiB in two PATCHes, 6 MiB then 11 MiB. Chunks stored: #1 part 0 and
# #2 a 1 MiB tail (first PATCH); #3 part 1, #4 part 2, #5 a 2 MiB tail (second PATCH).
S3_TUS_POINTS = [
    # Part 2 stored but not named by the manifest; part 1, named, never verified.
    ("s3.chunk_stored:4", True, "resumes"),
    ("s3.part_uploaded:2", False, "finished"),  # the copy into files/ left open
    ("blob.committed", False, "finished"),
    ("rows.inserted", False, "finished"),
    ("tus.state_done", False, "finished"),
]


@pytest.mark.parametrize(("crash_at", "checksum", "outcome"), S3_TUS_POINTS)
def test_a_tus_upload_on_s3_cut_after_each_step_finishes_on_restart_or_resumes(
        tmp_path: Path, ceph: Ceph, bucket: str, crash_at: str, checksum: bool, outcome: str) -> None:
    data_dir = tmp_path / "data"
    server = start(data_dir, "--no-fsync", crash_at=crash_at, env=s3_env(ceph, bucket))
    body = os.urandom(17 * MiB)
    record = TusUploadRecord(path=tus_create(server, len(body)), body=body)
    try:
        for offset, end in ((0, 6 * MiB), (6 * MiB, len(body))):
            record.sent = end
            answer = tus_patch(server, record.path, offset, body[offset:end], checksum=checksum)
            assert answer.status_code == 204, answer.text
            record.acknowledged = end
    except httpx.TransportError:
        pass
    wait_for_crash(server, crash_at.partition(":")[0])
    past_the_age_rule(time.time())
    restarted = start(data_dir, "--no-fsync", env=s3_env(ceph, bucket))
    s3 = (ceph.client(), bucket)
    try:
        expected = Expectations(tus=[record])
        check_after_restart(restarted, expected, s3=s3)
        assert (record.file_id is not None) == (outcome == "finished"), record
        if checksum:
            assert record.acknowledged == 6 * MiB, "bytes of an unverified checksummed PATCH kept"
        if record.file_id is None:
            answer = tus_patch(restarted, record.path, record.acknowledged, body[record.acknowledged:])
            assert answer.status_code == 204, answer.text
            record.sent = record.acknowledged = len(body)
        files = check_after_restart(restarted, expected, s3=s3)
        assert [item["sha256"] for item in files.values()] == [hashlib.sha256(body).hexdigest()]
        assert "Traceback" not in restarted.log()
    finally:
        stop_server(restarted)
