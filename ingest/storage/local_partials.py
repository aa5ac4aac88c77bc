"""Partial (resumable) uploads on local disk: `tus/<id>.bin` holds the bytes, `tus/<id>.json`
the state.

The offset of an upload is the size of its `.bin` file, so whatever reached the disk before a
dropped connection or a crash counts, and nothing else has to be kept in step with it. A
writing session holds an exclusive `flock` on the `.bin` file, so worker processes sharing the
data dir never write one upload at the same time. A finished upload becomes a blob by a hard
link into `files/`, atomic like the rename of an ordinary commit, and the partial stays intact
until the catalog row exists.

A state is replaced through a staging file `tus/<id>.<pid>.<incarnation>.new`, renamed over
`<id>.json`; a crash in between leaves the staging file, which `sweep_staging` removes once its
writer is gone (the same test as for temp files, ingest/storage/local.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ingest import crashpoints
from ingest.storage.base import PartialBusy, is_storage_id
from ingest.storage.local import INCARNATION, LocalStorage, fsync_dir, writer_gone, writev_all
from ingest.storage.write_behind import WriteBehind

STAGING_SUFFIX = ".new"


class LocalPartials:
    def __init__(self, storage: LocalStorage, root: Path) -> None:
        self._storage = storage
        self.partials_dir = root / "tus"

    def prepare(self) -> None:
        self.partials_dir.mkdir(parents=True, exist_ok=True)

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        if not is_storage_id(upload_id):
            raise KeyError(upload_id)
        return self.partials_dir / f"{upload_id}.bin", self.partials_dir / f"{upload_id}.json"

    def create_partial(self, upload_id: str, state: dict[str, Any]) -> None:
        data_path, _ = self._paths(upload_id)
        os.close(os.open(data_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        self.save_partial_state(upload_id, state)

    def partial_state(self, upload_id: str) -> tuple[dict[str, Any], int]:
        data_path, state_path = self._paths(upload_id)
        try:
            state = json.loads(state_path.read_bytes())
        except FileNotFoundError:
            raise KeyError(upload_id) from None
        try:
            offset = data_path.stat().st_size
        except FileNotFoundError:
            offset = 0
        return state, offset

    def save_partial_state(self, upload_id: str, state: dict[str, Any]) -> None:
        _, state_path = self._paths(upload_id)
        staging = state_path.with_suffix(f".{os.getpid()}.{INCARNATION}{STAGING_SUFFIX}")
        encoded = json.dumps(state, separators=(",", ":")).encode()
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, encoded)
            if self._storage.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        crashpoints.reached("tus.state_staged")
        os.replace(staging, state_path)
        if self._storage.fsync:
            fsync_dir(self.partials_dir)

    def open_partial(self, upload_id: str) -> LocalPartialWriter:
        data_path, _ = self._paths(upload_id)
        try:
            fd = os.open(data_path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KeyError(upload_id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PartialBusy(upload_id) from None
        offset = os.lseek(fd, 0, os.SEEK_END)
        return LocalPartialWriter(fd, offset, fsync=self._storage.fsync, write_behind=self._storage.write_behind)

    def read_partial(self, upload_id: str, *, end: int, block_size: int) -> Iterator[bytes]:
        data_path, _ = self._paths(upload_id)
        with data_path.open("rb") as source:
            remaining = end
            while remaining > 0 and (block := source.read(min(block_size, remaining))):
                remaining -= len(block)
                yield block

    def finish_partial(self, upload_id: str) -> LinkingBlobWriter:
        data_path, _ = self._paths(upload_id)
        return LinkingBlobWriter(self._storage, data_path)

    def terminate_partial(self, upload_id: str, *, keep_state: bool = False) -> None:
        data_path, state_path = self._paths(upload_id)
        with contextlib.suppress(FileNotFoundError):
            data_path.unlink()
        if not keep_state:
            with contextlib.suppress(FileNotFoundError):
                state_path.unlink()

    def partial_ids(self) -> list[str]:
        return [path.stem for path in self.partials_dir.glob("*.json")
                if is_storage_id(path.stem)]

    def sweep_staging(self, *, older_than: float) -> int:
        """Remove state staging files whose writer is gone or that are older than
        `older_than` seconds (a live one exists for a few milliseconds); return how many."""
        cutoff = time.time() - older_than
        removed = 0
        for staging in self.partials_dir.glob("*" + STAGING_SUFFIX):
            owner = staging.name.partition(".")[2]  # "<pid>.<incarnation>.new"
            with contextlib.suppress(FileNotFoundError):
                if writer_gone(owner) or staging.stat().st_mtime <= cutoff:
                    staging.unlink()
                    removed += 1
        return removed


class LocalPartialWriter:
    def __init__(self, fd: int, offset: int, *, fsync: bool, write_behind: int = 0) -> None:
        self._fd: int | None = fd
        self.offset = offset
        self._fsync = fsync
        self._behind = WriteBehind(fd, window=write_behind, start=offset)

    def write(self, block: bytes | bytearray) -> None:
        assert self._fd is not None, "write after close"
        view = memoryview(block)
        while view:
            view = view[os.write(self._fd, view):]
        self._behind.advance(len(block))

    def write_pieces(self, pieces: Sequence[bytes | bytearray]) -> None:
        """Append a block given as its pieces, in one `writev`."""
        assert self._fd is not None, "write after close"
        self._behind.advance(writev_all(self._fd, pieces))

    def rollback(self) -> None:
        assert self._fd is not None, "rollback after close"
        os.ftruncate(self._fd, self.offset)
        os.lseek(self._fd, self.offset, os.SEEK_SET)
        self._behind.rewind(self.offset)

    def sync(self) -> None:
        assert self._fd is not None, "sync after close"
        if self._fsync:
            os.fsync(self._fd)

    def truncate(self, offset: int) -> None:
        assert self._fd is not None, "truncate after close"
        assert offset <= self.offset, "truncate past the end"
        self.offset = offset
        self.rollback()
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._fsync:
                os.fsync(fd)
                self._behind.drop_written()
        finally:
            os.close(fd)  # closing the descriptor releases the flock


class LinkingBlobWriter:
    """A `BlobWriter` over a finished partial: committing links the bytes into place."""

    def __init__(self, storage: LocalStorage, data_path: Path) -> None:
        self._storage = storage
        self._data_path = data_path

    def write(self, block: bytes | bytearray) -> None:
        raise AssertionError("a finished partial upload takes no more bytes")

    def commit(self, blob_id: str) -> None:
        final_path = self._storage.path_of(blob_id)
        final_path.parent.mkdir(exist_ok=True)
        # A hard link appears whole or not at all, like the rename of an ordinary commit, and
        # leaves the partial in place until its catalog row is written.
        try:
            os.link(self._data_path, final_path)
        except FileExistsError:
            # The blob id is the upload id: a commit cut by a crash after this link left it.
            # The same inode holds the same bytes, so it is adopted as is.
            if not os.path.samefile(self._data_path, final_path):
                raise
        # The link keeps the inode's mtime, the time of the last PATCH; the sweep of row-less
        # blobs counts its age from the commit.
        os.utime(final_path)
        if self._storage.fsync:
            fsync_dir(final_path.parent)

    def abort(self) -> None:
        """Nothing to undo: the partial upload stays, so finishing can be retried."""
