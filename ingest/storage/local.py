"""Local-disk storage: `tmp/*.part` while writing, `files/<ab>/<id>` once committed.

Temporary files live on the same filesystem as committed ones, so a commit is one
`os.replace`: a reader sees the whole file or nothing, never a prefix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from ingest import crashpoints
from ingest.storage.base import is_storage_id
from ingest.storage.write_behind import WriteBehind

TEMP_SUFFIX = ".part"
INCARNATION = secrets.token_hex(4)  # tells this process from an earlier one with the same pid


class LocalStorage:
    def __init__(self, root: Path, *, fsync: bool = True, write_behind: int = 8 * 1024 * 1024) -> None:
        self.files_dir = root / "files"
        self.temp_dir = root / "tmp"
        self.fsync = fsync
        self.write_behind = write_behind  # bytes per write-behind window; 0 = off (write_behind.py)

    def prepare(self) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)

    def create(self) -> LocalBlobWriter:
        # The owner's pid and incarnation in the name let a sweep tell abandoned temp files
        # (owner dead, or an earlier process with a reused pid, as pid 1 in a container)
        # from those of live uploads in sibling worker processes.
        temp_name = f"{os.getpid()}.{INCARNATION}.{secrets.token_hex(8)}{TEMP_SUFFIX}"
        temp_path = self.temp_dir / temp_name
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        return LocalBlobWriter(self, temp_path, fd)

    def path_of(self, blob_id: str) -> Path:
        if not is_storage_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.files_dir / blob_id[:2] / blob_id

    def exists(self, blob_id: str) -> bool:
        return self.path_of(blob_id).is_file()

    def delete(self, blob_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_of(blob_id).unlink()

    def blob_ids(self, *, older_than: float) -> list[str]:
        cutoff = time.time() - older_than
        found = []
        for path in self.files_dir.glob("??/*"):
            with contextlib.suppress(FileNotFoundError):
                if is_storage_id(path.name) and path.stat().st_mtime <= cutoff:
                    found.append(path.name)
        return found

    def sweep_temporary(self, *, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for temp_path in self.temp_dir.glob("*" + TEMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                if writer_gone(temp_path.name) or temp_path.stat().st_mtime <= cutoff:
                    temp_path.unlink()
                    removed += 1
        return removed

    def temp_bytes(self) -> int:
        total = 0
        for temp_path in self.temp_dir.glob("*" + TEMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                total += temp_path.stat().st_size
        return total


class LocalBlobWriter:
    def __init__(self, storage: LocalStorage, temp_path: Path, fd: int) -> None:
        self._storage = storage
        self.temp_path = temp_path
        self._fd: int | None = fd
        self._behind = WriteBehind(fd, window=storage.write_behind)

    def write(self, block: bytes | bytearray) -> None:
        assert self._fd is not None, "write after commit or abort"
        written = os.write(self._fd, block)
        if written < len(block):
            # A short write is legal (signals, near-full disks): write the rest.
            view = memoryview(block)[written:]
            while view:
                view = view[os.write(self._fd, view):]
        self._behind.advance(len(block))

    def write_pieces(self, pieces: Sequence[bytes | bytearray]) -> None:
        """Append a block given as its pieces, in one `writev` (one syscall per block)."""
        assert self._fd is not None, "write after commit or abort"
        self._behind.advance(writev_all(self._fd, pieces))

    def commit(self, blob_id: str) -> None:
        assert self._fd is not None, "commit after commit or abort"
        final_path = self._storage.path_of(blob_id)
        if self._storage.fsync:
            os.fsync(self._fd)
            self._behind.drop_written()
        crashpoints.reached("temp.synced")
        self._close()
        final_path.parent.mkdir(exist_ok=True)
        os.replace(self.temp_path, final_path)
        if self._storage.fsync:
            fsync_dir(final_path.parent)

    def abort(self) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.temp_path.unlink()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def writev_all(fd: int, pieces: Sequence[bytes | bytearray]) -> int:
    """Write every piece, in order, with as few `writev` calls as the kernel allows; return
    the bytes written. A short write (signals, near-full disks) goes on from where it stopped."""
    total = sum(len(piece) for piece in pieces)
    written = os.writev(fd, pieces)
    if written < total:
        rest = memoryview(b"".join(pieces))[written:]
        while rest:
            rest = rest[os.write(fd, rest):]
    return total


def writer_gone(temp_name: str) -> bool:
    """Whether the process that named a file `<pid>.<incarnation>.…` is gone; a name with this
    process's pid but another incarnation is an earlier process's (pid 1 in a restarted container)."""
    pid_text, _, rest = temp_name.partition(".")
    incarnation = rest.partition(".")[0]
    if not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return incarnation != INCARNATION
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fsync_dir(directory: Path) -> None:
    """Persist a rename: the new directory entry is durable only once the directory is synced."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
