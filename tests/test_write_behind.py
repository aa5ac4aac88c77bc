"""Write-behind: windows handed to writeback as they fill, settled and dropped one behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ingest.storage import write_behind
from ingest.storage.local import LocalStorage
from ingest.storage.write_behind import WriteBehind
from tests.conftest import require_tool

MiB = 1024 * 1024
BLOB_ID = "0123456789abcdef0123456789abcdef"


class RecordingCalls:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int]] = []

    def sync_file_range(self, fd: int, begin: int, length: int, flags: int) -> int:
        self.calls.append(("sync", begin, length, flags))
        return 0

    def fadvise(self, fd: int, begin: int, length: int, advice: int) -> None:
        self.calls.append(("fadvise", begin, length, advice))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> RecordingCalls:
    if not write_behind.AVAILABLE:
        pytest.skip("sync_file_range is not available on this system")
    recording = RecordingCalls()
    monkeypatch.setattr(write_behind, "_sync_file_range", recording.sync_file_range)
    monkeypatch.setattr(write_behind.os, "posix_fadvise", recording.fadvise)
    return recording


def test_each_full_window_starts_writeback_and_the_one_before_it_is_settled_and_dropped(
        recorded: RecordingCalls) -> None:
    behind = WriteBehind(3, window=4 * MiB)
    for _ in range(10):
        behind.advance(1 * MiB)  # 10 MiB in 1 MiB writes: windows [0,4) and [4,8) are full
    write = write_behind.SYNC_FILE_RANGE_WRITE
    settle = write_behind.SYNC_FILE_RANGE_WAIT_BEFORE | write | write_behind.SYNC_FILE_RANGE_WAIT_AFTER
    assert recorded.calls == [
        ("sync", 0, 4 * MiB, write),
        ("sync", 4 * MiB, 4 * MiB, write),
        ("sync", 0, 4 * MiB, settle),
        ("fadvise", 0, 4 * MiB, os.POSIX_FADV_DONTNEED),
    ]
    recorded.calls.clear()
    behind.drop_written()  # after the fsync of a commit
    assert recorded.calls == [("fadvise", 4 * MiB, 6 * MiB, os.POSIX_FADV_DONTNEED)]


def test_a_resumed_file_is_followed_from_its_offset_and_a_rollback_rewinds(recorded: RecordingCalls) -> None:
    behind = WriteBehind(3, window=4 * MiB, start=10 * MiB)
    behind.advance(3 * MiB)
    assert recorded.calls == []
    behind.advance(1 * MiB)
    assert recorded.calls == [("sync", 10 * MiB, 4 * MiB, write_behind.SYNC_FILE_RANGE_WRITE)]
    behind.rewind(11 * MiB)
    recorded.calls.clear()
    behind.advance(4 * MiB)
    assert recorded.calls == [("sync", 11 * MiB, 4 * MiB, write_behind.SYNC_FILE_RANGE_WRITE)]


def test_a_zero_window_turns_write_behind_off(recorded: RecordingCalls) -> None:
    behind = WriteBehind(3, window=0)
    behind.advance(64 * MiB)
    behind.drop_written()
    assert not behind.enabled and recorded.calls == []


def test_a_committed_blob_leaves_at_most_two_windows_in_the_page_cache(tmp_path: Path) -> None:
    fincore = require_tool("fincore")
    if not write_behind.AVAILABLE:
        pytest.skip("sync_file_range is not available on this system")
    storage = LocalStorage(tmp_path, fsync=True, write_behind=1 * MiB)
    storage.prepare()
    writer = storage.create()
    block = os.urandom(256 * 1024)
    for _ in range(64 * 4):  # 64 MiB
        writer.write(block)
    resident_while_writing = _resident_bytes(fincore, writer.temp_path)
    writer.commit(BLOB_ID)
    assert storage.path_of(BLOB_ID).stat().st_size == 64 * MiB
    assert resident_while_writing <= 3 * MiB, resident_while_writing
    assert _resident_bytes(fincore, storage.path_of(BLOB_ID)) <= 1 * MiB


def _resident_bytes(fincore: str, path: Path) -> int:
    output = subprocess.run([fincore, "--bytes", "--noheadings", "--output", "RES", str(path)],
                            check=True, capture_output=True, text=True).stdout
    return int(output.strip() or 0)
