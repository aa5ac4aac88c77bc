"""The expiry sweep: incomplete tus uploads past Upload-Expires, and finished ones' records."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio.to_thread

from ingest.errors import IngestError, UploadLocked
from ingest.storage.base import PartialBusy, ResumableStorage

if TYPE_CHECKING:
    from ingest.tus.service import TusService

log = logging.getLogger("ingest.tus")


async def sweep_expired(tus: TusService) -> int:
    """Remove expired uploads: incomplete ones past Upload-Expires, and the records of
    finished ones kept as long for clients that come back to check."""
    storage = tus.storage
    removed = 0
    await anyio.to_thread.run_sync(
        lambda: storage.sweep_staging(older_than=tus.settings.temp_max_age))
    now = tus.clock()
    for upload_id in await anyio.to_thread.run_sync(storage.partial_ids):
        if tus.locks.busy(upload_id):
            continue
        try:
            state, offset = await anyio.to_thread.run_sync(storage.partial_state, upload_id)
        except KeyError:
            continue
        if state["expires_at"] > now:
            continue
        try:
            await anyio.to_thread.run_sync(terminate_unless_busy, storage, upload_id)
        except IngestError:
            continue
        await tus.release_link(upload_id, state)
        tus.hashes.forget(upload_id)
        tus.tracked.end(upload_id, "expired", state=state, offset=offset, request=None)
        removed += 1
    if removed:
        log.info("swept %d expired tus uploads", removed)
    return removed


def terminate_unless_busy(storage: ResumableStorage, upload_id: str) -> None:
    """Worker thread: a session open in another process means the upload is alive."""
    try:
        writer = storage.open_partial(upload_id)
    except PartialBusy:
        raise UploadLocked(upload_id) from None
    except KeyError:  # no bytes (a finished upload's record)
        storage.terminate_partial(upload_id)
        return
    try:
        storage.terminate_partial(upload_id)
    finally:
        writer.close()
