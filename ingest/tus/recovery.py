"""Start-up recovery of tus uploads after a crash (README "Crashes"), before serving.

Every step of a tus commit leaves something storage and catalog can tell apart, so recovery
needs no journal of its own: states whose staging file was never renamed, uploads holding all
their bytes but no stored file (committed now, adopting a blob or a row a crash left), the
leftover bytes of uploads already done, and bytes a checksummed PATCH wrote but never verified.
"""

from __future__ import annotations

import functools
import logging

import anyio
import anyio.to_thread

from ingest.errors import IngestError
from ingest.observe.events import HookRejected
from ingest.storage.base import PartialBusy, ResumableStorage
from ingest.tus.service import TusService, TusUpload

log = logging.getLogger("ingest.tus")


async def recover(tus: TusService) -> None:
    """Remove what a crash left of states being written, finish every commit a crash cut
    short, cut unverified bytes off, and drop the leftover bytes of uploads whose state already
    names their stored file. An upload recovery cannot settle is left for its next request."""
    storage = tus.storage
    staged = await anyio.to_thread.run_sync(
        lambda: storage.sweep_staging(older_than=tus.settings.temp_max_age))
    finished = cut = 0
    now = tus.clock()
    for upload_id in await anyio.to_thread.run_sync(storage.partial_ids):
        try:
            state, stored_bytes = await anyio.to_thread.run_sync(storage.partial_state, upload_id)
        except KeyError:
            continue
        upload = TusUpload.from_state(upload_id, state, stored_bytes)
        try:
            async with tus.locks.hold(upload_id):
                if upload.file_id is not None:
                    if stored_bytes or upload.length == 0:
                        await anyio.to_thread.run_sync(
                            functools.partial(storage.terminate_partial, upload_id, keep_state=True))
                elif upload.expires_at <= now:
                    continue  # the expiry sweep removes it
                elif upload.complete and upload.concat is None:
                    await tus.commit(upload, request=None)
                    finished += 1
                else:
                    cut += await anyio.to_thread.run_sync(tidy_unless_busy, storage, upload_id)
        except (IngestError, HookRejected, OSError) as error:
            log.warning("upload %s: recovery left it for its next request: %s", upload_id, error)
    if staged or finished or cut:
        log.info("recovered tus uploads: %d staging files removed, %d commits finished, "
                 "%d unverified chunks cut off", staged, finished, cut)


def tidy_unless_busy(storage: ResumableStorage, upload_id: str) -> int:
    """Worker thread, unless another process is writing the upload: open a session (which on
    S3 deletes chunks the manifest does not name) and cut unverified bytes off. Returns 1 when
    bytes were cut."""
    try:
        writer = storage.open_partial(upload_id)
    except (PartialBusy, KeyError):
        return 0
    try:
        state, _ = storage.partial_state(upload_id)
        unverified = state.get("unverified_from")
        if unverified is not None and writer.offset > unverified:
            writer.truncate(unverified)
            return 1
        return 0
    finally:
        writer.close()
