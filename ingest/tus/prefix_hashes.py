"""The running SHA-256 of each tus upload's stored bytes, carried from one PATCH to the next."""

from __future__ import annotations

import anyio.to_thread

from ingest.storage.base import ResumableStorage
from ingest.tus.hash_state import UploadHash
from ingest.tus.upload import TusUpload


class PrefixHashes:
    """SHA-256 of each upload's stored prefix, keyed by its length, while this process lives;
    after a restart (or a PATCH served by another worker) it is rebuilt from the bytes."""

    def __init__(self, storage: ResumableStorage, *, block_size: int) -> None:
        self._storage = storage
        self._block_size = block_size
        self._hashers: dict[str, tuple[int, UploadHash]] = {}

    def keep(self, upload: TusUpload, upload_hash: UploadHash) -> None:
        """Remember the hash of the upload's `offset` bytes here, and in its saved state."""
        self._hashers[upload.upload_id] = (upload.offset, upload_hash)
        upload.sha256_state, upload.sha256_offset = upload_hash.saved(), upload.offset

    def forget(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)

    async def take(self, upload: TusUpload) -> UploadHash:
        """The running SHA-256 of the stored bytes: this process's own, else the one saved
        with the upload's state, else rebuilt from storage on a worker thread (a state saved
        by another version, or an upload whose bytes outran its saved state in a crash)."""
        cached = self._hashers.pop(upload.upload_id, None)
        if cached is not None and cached[0] == upload.offset:
            return cached[1]
        if upload.sha256_offset == upload.offset:
            restored = UploadHash.restore(upload.sha256_state)
            if restored is not None:
                return restored

        def rehash() -> UploadHash:
            hasher = UploadHash()
            for block in self._storage.read_partial(upload.upload_id, end=upload.offset,
                                                    block_size=self._block_size):
                hasher.update(block)
            return hasher

        return await anyio.to_thread.run_sync(rehash)
