"""A real server killed right after each step of each commit sequence (INGEST_CRASH_AT,
ingest/crashpoints.py), on local disk, then restarted on the same data dir: every invariant of
tests/crashes.py holds, and each interrupted commit has either finished or vanished."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import stop_server, wait_until
from tests.crashes import (
    Expectations,
    TusUploadRecord,
    check_after_restart,
    kill_9,
    past_the_age_rule,
    start,
    tus_create,
    tus_head,
    tus_patch,
    wait_for_crash,
)

MiB = 1024 * 1024


@pytest.mark.parametrize(("crash_at", "stored"), [
    ("temp.synced:1", False),  # first file fsynced, nothing committed
    ("blob.committed:1", False),  # first blob renamed into files/, the second not
    ("rows.inserted", True),  # both rows: stored, though the answer never left
])
def test_a_multipart_commit_cut_after_each_step_is_stored_whole_or_not_at_all(
        tmp_path: Path, crash_at: str, stored: bool) -> None:
    data_dir = tmp_path / "data"
    server = start(data_dir, crash_at=crash_at)
    contents = [os.urandom(2 * MiB + 17), os.urandom(300_000)]
    with pytest.raises(httpx.TransportError):
        httpx.post(server.url + "/uploads", timeout=30, files=[
            ("a", ("a.bin", contents[0])), ("b", ("b.bin", contents[1]))])
    wait_for_crash(server, crash_at.partition(":")[0])
    crashed_at = time.time()
    expected = Expectations(sent_whole={hashlib.sha256(content).hexdigest() for content in contents})
    past_the_age_rule(crashed_at)
    restarted = start(data_dir)
    try:
        files = check_after_restart(restarted, expected)
        assert {item["sha256"] for item in files.values()} == (expected.sent_whole if stored else set())
    finally:
        stop_server(restarted)


@pytest.mark.parametrize(("crash_at", "stored"), [("blob.committed", False), ("rows.inserted", True)])
def test_a_raw_put_cut_after_each_step_is_stored_whole_or_not_at_all(
        tmp_path: Path, crash_at: str, stored: bool) -> None:
    data_dir = tmp_path / "data"
    server = start(data_dir, crash_at=crash_at)
    content = os.urandom(3 * MiB + 5)
    with pytest.raises(httpx.TransportError):
        httpx.put(server.url + "/uploads/raw.bin", content=content, timeout=30)
    wait_for_crash(server, crash_at)
    crashed_at = time.time()
    expected = Expectations(sent_whole={hashlib.sha256(content).hexdigest()})
    past_the_age_rule(crashed_at)
    restarted = start(data_dir)
    try:
        files = check_after_restart(restarted, expected)
        assert len(files) == (1 if stored else 0)
    finally:
        stop_server(restarted)


# State writes of the tus upload below: #1 at creation, #2 after the first PATCH, #3 after
# the last PATCH, #4 marking it done (a checksummed PATCH adds one before its first byte).
TUS_POINTS = [
    ("tus.chunk_appended:1", "resumes"),  # first PATCH on disk, its answer never sent
    ("tus.state_staged:2", "resumes"),  # a staging file left beside the state
    ("tus.chunk_appended:2", "finished"),  # every byte on disk: recovery commits it
    ("tus.state_staged:3", "finished"),
    ("tus.state_written:2", "finished"),
    ("blob.committed", "finished"),  # blob linked, no row: adopted
    ("rows.inserted", "finished"),  # row written, state not done: marked done
    ("tus.state_done", "finished"),  # done, partial bytes not yet removed
]


@pytest.mark.parametrize(("crash_at", "outcome"), TUS_POINTS)
def test_a_tus_upload_cut_after_each_step_finishes_on_restart_or_resumes_to_the_right_sha256(
        tmp_path: Path, crash_at: str, outcome: str) -> None:
    data_dir = tmp_path / "data"
    server = start(data_dir, "--block-size", "256KiB", crash_at=crash_at)
    body = os.urandom(3 * MiB + 99)
    record = TusUploadRecord(path=tus_create(server, len(body)), body=body)
    try:
        for offset, end in ((0, MiB), (MiB, len(body))):
            record.sent = end
            answer = tus_patch(server, record.path, offset, body[offset:end])
            assert answer.status_code == 204, answer.text
            record.acknowledged = end
    except httpx.TransportError:
        pass
    wait_for_crash(server, crash_at.partition(":")[0])
    crashed_at = time.time()
    past_the_age_rule(crashed_at)
    restarted = start(data_dir)
    try:
        expected = Expectations(tus=[record])
        check_after_restart(restarted, expected)
        assert (record.file_id is not None) == (outcome == "finished"), record
        if record.file_id is None:
            answer = tus_patch(restarted, record.path, record.acknowledged, body[record.acknowledged:])
            assert answer.status_code == 204, answer.text
            record.sent = len(body)
            record.acknowledged = len(body)
            files = check_after_restart(restarted, expected)
            assert record.file_id is not None
        else:
            files = check_after_restart(restarted, expected)
        assert [item["sha256"] for item in files.values()] == [hashlib.sha256(body).hexdigest()]
        assert "Traceback" not in restarted.log()
    finally:
        stop_server(restarted)


def test_a_checksummed_patch_cut_by_a_crash_keeps_none_of_its_bytes(tmp_path: Path) -> None:
    """kill -9 while the body of a PATCH with Upload-Checksum streams in: its bytes reached the
    disk, but the checksum never vouched for them, so the restart cuts them off."""
    data_dir = tmp_path / "data"
    server = start(data_dir, "--block-size", "64KiB", "--no-fsync")
    body = os.urandom(4 * MiB)
    record = TusUploadRecord(path=tus_create(server, len(body)), body=body)
    first = tus_patch(server, record.path, 0, body[:MiB], checksum=True)
    assert first.status_code == 204, first.text
    record.acknowledged = record.sent = MiB
    rest = body[MiB:]
    digest = base64.b64encode(hashlib.sha1(rest).digest()).decode()
    held = data_dir / "tus" / (record.path.rsplit("/", 1)[1] + ".bin")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall((f"PATCH {record.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                      f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {MiB}\r\n"
                      f"Upload-Checksum: sha1 {digest}\r\nContent-Length: {len(rest)}\r\n\r\n").encode()
                     + rest[:2 * MiB])
        record.sent = 3 * MiB
        assert wait_until(lambda: held.stat().st_size >= 2 * MiB), held.stat().st_size
        kill_9(server)
    assert server.process.returncode == -signal.SIGKILL
    cut_at = held.stat().st_size
    restarted = start(data_dir, "--no-fsync")
    try:
        check_after_restart(restarted, Expectations(tus=[record]))
        assert record.acknowledged == MiB, f"HEAD offers {record.acknowledged} of the {cut_at} bytes on disk"
        assert held.stat().st_size == MiB
        done = tus_patch(restarted, record.path, MiB, rest, checksum=True)
        assert done.status_code == 204, done.text
        assert tus_head(restarted, record.path).headers["ingest-file-id"]
    finally:
        stop_server(restarted)


def test_two_workers_finish_a_tus_commit_cut_after_its_row(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start(data_dir, "--workers", "2", crash_at="rows.inserted")
    body = os.urandom(2 * MiB)
    record = TusUploadRecord(path=tus_create(server, len(body)), body=body, sent=len(body))
    with pytest.raises(httpx.TransportError):
        tus_patch(server, record.path, 0, body)
    wait_for_crash(server, "rows.inserted")
    past_the_age_rule(time.time())
    restarted = start(data_dir, "--workers", "2")
    try:
        files = check_after_restart(restarted, Expectations(tus=[record]))
        assert record.file_id in files
        assert "Traceback" not in restarted.log()
    finally:
        stop_server(restarted)
