"""Resumable uploads: the tus 1.0.0 protocol (https://tus.io/protocols/resumable-upload).

What the composition root (ingest/app.py) takes from here: the service, its routes under
`/files/`, the two middlewares (`TusHeaders` outside auth, `TusVersion` inside it), the headers
CORS must allow, start-up recovery and the periodic sweep of expired uploads.
"""

from __future__ import annotations

import logging

import anyio

from ingest.tus.http import EXPOSED_HEADERS, METHODS, REQUEST_HEADERS, TusHeaders, TusVersion, routes
from ingest.tus.recovery import recover
from ingest.tus.service import TusService

log = logging.getLogger("ingest.tus")

__all__ = ["EXPOSED_HEADERS", "METHODS", "REQUEST_HEADERS", "TusHeaders", "TusService", "TusVersion",
           "recover", "routes", "sweep_periodically"]


async def sweep_periodically(tus: TusService) -> None:
    """Remove expired uploads now and then; an interval well below the expiry keeps the disk
    from holding abandoned uploads much longer than announced in Upload-Expires."""
    interval = min(3600.0, max(1.0, tus.settings.tus_expiry / 4))
    while True:
        try:
            await tus.sweep()
        except Exception:
            log.exception("sweeping expired tus uploads failed")
        await anyio.sleep(interval)
