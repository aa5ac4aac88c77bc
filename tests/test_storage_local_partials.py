"""Partial uploads on local disk: offsets are bytes on disk, sessions are exclusive across
processes, finishing links the bytes into place."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest.storage.base import BlobWriter, PartialBusy, ResumableStorage
from ingest.storage.local import LocalStorage
from ingest.storage.local_partials import LocalPartials

UPLOAD_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def partials(tmp_path: Path) -> LocalPartials:
    storage = LocalStorage(tmp_path / "data", fsync=True)
    storage.prepare()
    partials = LocalPartials(storage, tmp_path / "data")
    partials.prepare()
    return partials


def test_local_partials_implement_the_resumable_storage_protocol(partials: LocalPartials) -> None:
    _: ResumableStorage = partials
    __: BlobWriter = partials.finish_partial(UPLOAD_ID)


def test_the_offset_is_the_bytes_on_disk_and_state_round_trips(partials: LocalPartials) -> None:
    partials.create_partial(UPLOAD_ID, {"length": 10, "note": "x"})
    writer = partials.open_partial(UPLOAD_ID)
    assert writer.offset == 0
    writer.write(b"abc")
    writer.close()
    partials.save_partial_state(UPLOAD_ID, {"length": 10, "note": "y"})
    assert partials.partial_state(UPLOAD_ID) == ({"length": 10, "note": "y"}, 3)
    assert partials.open_partial(UPLOAD_ID).offset == 3
    assert partials.partial_ids() == [UPLOAD_ID]


def test_rollback_discards_only_what_the_session_wrote(partials: LocalPartials) -> None:
    partials.create_partial(UPLOAD_ID, {})
    first = partials.open_partial(UPLOAD_ID)
    first.write(b"keep")
    first.close()
    second = partials.open_partial(UPLOAD_ID)
    second.write(b"drop me")
    second.rollback()
    second.write(b"!")
    second.close()
    assert b"".join(partials.read_partial(UPLOAD_ID, end=100, block_size=2)) == b"keep!"


def test_a_session_open_in_another_process_makes_the_upload_busy(partials: LocalPartials) -> None:
    partials.create_partial(UPLOAD_ID, {})
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys
        fd = open({str(partials.partials_dir / (UPLOAD_ID + '.bin'))!r}, "ab")
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(PartialBusy):
            partials.open_partial(UPLOAD_ID)
    finally:
        holder.communicate("", timeout=10)
    partials.open_partial(UPLOAD_ID).close()  # free again once that process let go


def test_two_sessions_in_one_process_exclude_each_other(partials: LocalPartials) -> None:
    partials.create_partial(UPLOAD_ID, {})
    writer = partials.open_partial(UPLOAD_ID)
    with pytest.raises(PartialBusy):
        partials.open_partial(UPLOAD_ID)
    writer.close()


def test_finishing_links_the_bytes_into_a_blob_and_abort_keeps_the_partial(
        tmp_path: Path, partials: LocalPartials) -> None:
    storage = LocalStorage(tmp_path / "data")
    partials.create_partial(UPLOAD_ID, {})
    writer = partials.open_partial(UPLOAD_ID)
    writer.write(b"whole")
    writer.close()
    partials.finish_partial(UPLOAD_ID).abort()
    assert partials.partial_state(UPLOAD_ID)[1] == 5
    partials.finish_partial(UPLOAD_ID).commit("f" * 32)
    assert storage.path_of("f" * 32).read_bytes() == b"whole"
    partials.terminate_partial(UPLOAD_ID, keep_state=True)
    assert partials.partial_state(UPLOAD_ID) == ({}, 0)
    assert storage.path_of("f" * 32).read_bytes() == b"whole"
    partials.terminate_partial(UPLOAD_ID)
    with pytest.raises(KeyError):
        partials.partial_state(UPLOAD_ID)


@pytest.mark.parametrize("upload_id", ["../catalog", "ABCDEF0123456789ABCDEF0123456789", "", "x" * 32])
def test_ids_of_another_shape_never_become_paths(partials: LocalPartials, upload_id: str) -> None:
    with pytest.raises(KeyError):
        partials.partial_state(upload_id)
    with pytest.raises(KeyError):
        partials.open_partial(upload_id)


def test_truncate_cuts_the_bytes_back_and_the_session_appends_there(partials: LocalPartials) -> None:
    partials.create_partial(UPLOAD_ID, {})
    writer = partials.open_partial(UPLOAD_ID)
    writer.write(b"verified-unverified")
    writer.close()
    writer = partials.open_partial(UPLOAD_ID)
    writer.truncate(len(b"verified"))
    writer.write(b"+more")
    writer.close()
    assert b"".join(partials.read_partial(UPLOAD_ID, end=100, block_size=4)) == b"verified+more"


def test_committing_a_partial_whose_blob_a_crash_already_linked_adopts_it(partials: LocalPartials) -> None:
    partials.create_partial(UPLOAD_ID, {})
    writer = partials.open_partial(UPLOAD_ID)
    writer.write(b"whole")
    writer.close()
    partials.finish_partial(UPLOAD_ID).commit(UPLOAD_ID)
    partials.finish_partial(UPLOAD_ID).commit(UPLOAD_ID)  # the retry after a crash
    assert partials._storage.path_of(UPLOAD_ID).read_bytes() == b"whole"


def test_staging_files_of_dead_processes_are_swept_and_live_ones_kept(partials: LocalPartials) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    left = partials.partials_dir / f"{UPLOAD_ID}.{dead}.0badcafe.new"
    old_format = partials.partials_dir / f"{UPLOAD_ID}.{dead}.new"
    live = partials.partials_dir / f"{UPLOAD_ID}.1.0badcafe.new"  # pid 1 lives (not ours to judge)
    for path in (left, old_format, live):
        path.write_bytes(b"{}")
    assert partials.sweep_staging(older_than=3600) == 2
    assert [path.name for path in partials.partials_dir.glob("*.new")] == [live.name]
