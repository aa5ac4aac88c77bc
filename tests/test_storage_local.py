"""LocalStorage: atomic commit, abort, sweeping of abandoned temp files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.storage.base import LocalFiles, Storage
from ingest.storage.local import LocalStorage

BLOB_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path, fsync=True)
    storage.prepare()
    return storage


def test_local_storage_implements_the_storage_protocols(storage: LocalStorage) -> None:
    _: Storage = storage
    assert isinstance(storage, LocalFiles)


def test_written_blob_is_invisible_until_commit(storage: LocalStorage) -> None:
    writer = storage.create()
    writer.write(b"abc")
    writer.write(bytearray(b"def"))
    assert not storage.exists(BLOB_ID)
    writer.commit(BLOB_ID)
    assert storage.path_of(BLOB_ID).read_bytes() == b"abcdef"
    assert list(storage.temp_dir.iterdir()) == []


def test_abort_removes_the_temp_file_and_is_idempotent(storage: LocalStorage) -> None:
    writer = storage.create()
    writer.write(b"abc")
    writer.abort()
    writer.abort()
    assert list(storage.temp_dir.iterdir()) == []


def test_path_of_refuses_anything_but_a_blob_id(storage: LocalStorage) -> None:
    for bad in ["../etc/passwd", "/etc/passwd", "ABCDEF0123456789abcdef0123456789", "x" * 32, ""]:
        with pytest.raises(ValueError):
            storage.path_of(bad)


def test_delete_of_a_missing_blob_is_not_an_error(storage: LocalStorage) -> None:
    storage.delete(BLOB_ID)


def test_sweep_keeps_live_temp_files_and_removes_those_of_dead_processes(storage: LocalStorage) -> None:
    live = storage.create()
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
    orphan = storage.temp_dir / f"{dead_pid}.cafe.0000.part"
    orphan.write_bytes(b"left by a crash")
    same_pid_old_incarnation = storage.temp_dir / f"{os.getpid()}.deadbeef.0001.part"
    same_pid_old_incarnation.write_bytes(b"left by an earlier process with our pid")
    assert storage.sweep_temporary(older_than=3600) == 2
    assert [p.name for p in storage.temp_dir.iterdir()] == [live.temp_path.name]
    live.abort()


def test_sweep_removes_temp_files_untouched_for_too_long(storage: LocalStorage) -> None:
    stale = storage.create()
    old = time.time() - 7200
    os.utime(stale.temp_path, (old, old))
    assert storage.sweep_temporary(older_than=3600) == 1
    stale.abort()


def test_blob_ids_lists_only_committed_blobs_older_than_asked(storage: LocalStorage) -> None:
    writer = storage.create()
    writer.write(b"x")
    writer.commit(BLOB_ID)
    assert storage.blob_ids(older_than=3600) == []
    old = time.time() - 7200
    os.utime(storage.path_of(BLOB_ID), (old, old))
    assert storage.blob_ids(older_than=3600) == [BLOB_ID]


def test_a_block_given_as_pieces_is_written_whole_and_in_order(storage: LocalStorage) -> None:
    writer = storage.create()
    writer.write_pieces([b"ab", bytearray(b"cd"), b"e" * 100_000])
    writer.commit(BLOB_ID)
    assert storage.path_of(BLOB_ID).read_bytes() == b"abcd" + b"e" * 100_000


def test_a_short_writev_goes_on_from_where_it_stopped(storage: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, pieces: real_writev(fd, [bytes(pieces[0][:3])]))
    writer = storage.create()
    writer.write_pieces([b"abcdef", b"ghij"])
    writer.commit(BLOB_ID)
    assert storage.path_of(BLOB_ID).read_bytes() == b"abcdefghij"
