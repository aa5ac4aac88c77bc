"""Resumable uploads: the tus 1.0.0 protocol (https://tus.io/protocols/resumable-upload).

`install` is all the composition root needs besides picking the partial-upload store: it
builds the service, the routes under `/files/`, and the middleware (tus headers, CORS).
"""

from __future__ import annotations

import logging

import anyio
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware

from ingest.config import Settings
from ingest.storage.base import ResumableStorage
from ingest.tus.http import EXPOSED_HEADERS, METHODS, REQUEST_HEADERS, TusProtocol, routes
from ingest.tus.service import TusService
from ingest.uploads import UploadService

log = logging.getLogger("ingest.tus")

__all__ = ["TusService", "install", "sweep_periodically"]


def install(app: Starlette, settings: Settings, uploads: UploadService, partials: ResumableStorage) -> None:
    """Add the tus endpoint. Call after any auth middleware, so that CORS preflights (answered
    by the outermost CORS middleware) need no token and every 401 still carries tus headers."""
    app.state.tus = TusService(settings, uploads, partials)
    app.router.routes.extend(routes())
    app.add_middleware(TusProtocol)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins),
            allow_methods=[*METHODS, "GET", "PUT"], allow_headers=list(REQUEST_HEADERS),
            expose_headers=list(EXPOSED_HEADERS), max_age=86400)


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
