"""Resumable uploads: the tus 1.0.0 protocol (https://tus.io/protocols/resumable-upload).

`install` and `install_edge` are all the composition root needs besides picking the
partial-upload store: the service, the routes under `/files/` and the version check go inside
auth; the tus headers, the method override and CORS go outside it.
"""

from __future__ import annotations

import logging

import anyio
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware

from ingest.config import Settings
from ingest.storage.base import ResumableStorage
from ingest.tus.http import EXPOSED_HEADERS, METHODS, REQUEST_HEADERS, TusHeaders, TusVersion, routes
from ingest.tus.recovery import recover
from ingest.tus.service import TusService
from ingest.uploads import UploadService

log = logging.getLogger("ingest.tus")

__all__ = ["TusService", "install", "install_edge", "recover", "sweep_periodically"]


def install(app: Starlette, settings: Settings, uploads: UploadService, partials: ResumableStorage) -> None:
    """Add the tus endpoint and its version check (412). Call before adding auth middleware,
    so that auth wraps the check: without a valid token, the answer is 401 whatever the
    request's Tus-Resumable says."""
    app.state.tus = TusService(settings, uploads, partials)
    app.router.routes.extend(routes())
    app.add_middleware(TusVersion)


def install_edge(app: Starlette, settings: Settings) -> None:
    """Add what must wrap auth: Tus-Resumable on every answer (401s included), the method
    override, and CORS. A CORS preflight carries no Authorization header (Fetch standard,
    CORS-preflight request), so the outermost CORS middleware answers it before auth; any
    other OPTIONS, tus discovery included, needs the token like every other request."""
    app.add_middleware(TusHeaders)
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
