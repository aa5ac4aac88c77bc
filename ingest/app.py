"""The composition root: settings -> storage + catalog -> upload service -> routes -> middleware.

Everything an app is made of is assembled here, in the order it runs: the middleware stack
below is read top (outermost) to bottom (innermost, next to the routes). Only this module
picks concrete backends; errors are answered by the handlers of ingest/edge/errors.py.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from ingest import backends, tus
from ingest.catalog.base import Catalog
from ingest.catalog.sqlite import SqliteCatalog
from ingest.config import Settings
from ingest.edge import files
from ingest.edge.access import Auth, parse_tokens
from ingest.edge.errors import EXCEPTION_HANDLERS
from ingest.edge.guards import UploadGuard
from ingest.links import http as links_http
from ingest.observe import operations
from ingest.observe.accesslog import AccessLog
from ingest.observe.events import HookTarget
from ingest.observe.hooks import HookCallable
from ingest.observe.progress import ProgressBoard, ProgressMiddleware
from ingest.server import banner
from ingest.storage.base import ResumableStorage, Storage
from ingest.storage.local import LocalStorage
from ingest.storage.local_partials import LocalPartials
from ingest.storage.session_locks import FileSessionLocks, PostgresHandOver, PostgresSessionLocks
from ingest.uploads import UploadService
from ingest.web import browser, openapi

log = logging.getLogger("ingest")


def create_app(settings: Settings | None = None,
               hooks: Sequence[HookCallable | HookTarget] = ()) -> Starlette:
    """`hooks`: Python callables (or targets) receiving upload events; see ingest/observe/events.py."""
    settings = settings or Settings.from_env()
    storage = _storage(settings)
    events = operations.build_events(settings, hooks)
    service = UploadService(settings, storage, _catalog(settings), events)
    partials, session_locks, handover = _partials(settings, storage)
    resumable = tus.TusService(settings, service, partials)
    resumable.handover = handover
    progress = ProgressBoard()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        banner.log_banner(settings)
        async with operations.run_background(settings, events), anyio.create_task_group() as background:
            # Before serving, with hooks delivered: finish the tus commits a crash cut short.
            await tus.recover(resumable)
            background.start_soon(_sweep_periodically, service)
            background.start_soon(tus.sweep_periodically, resumable)
            if handover is not None:
                background.start_soon(handover.listen, resumable.locks.ask_to_release)
            try:
                yield
            finally:
                background.cancel_scope.cancel()
        await service.stop()
        if session_locks is not None:
            await anyio.to_thread.run_sync(session_locks.close)

    routes = [
        *operations.routes(settings),
        *openapi.routes(),
        *files.routes(),
        *tus.routes(),
        *links_http.routes(),
        *browser.routes(),
    ]
    middleware = [
        # Outermost: one log line per answer, 401s included; sets the request context.
        Middleware(AccessLog, enabled=settings.access_log, forward_headers=settings.hook_forward_headers,
                   requests=events.metrics.requests),
        # A CORS preflight carries no Authorization header (Fetch standard, CORS-preflight
        # request), so it is answered before auth; any other OPTIONS needs the token.
        *_cors(settings),
        # Tus-Resumable on every /files answer (401s included) and X-HTTP-Method-Override.
        Middleware(tus.TusHeaders),
        Middleware(Auth, tokens=parse_tokens(settings.tokens), find_link=service.links.find),
        # Inside auth: without a valid token the answer is 401, whatever Tus-Resumable says.
        Middleware(tus.TusVersion),
        Middleware(UploadGuard, max_concurrent_uploads=settings.max_concurrent_uploads,
                   body_idle_timeout=settings.body_idle_timeout, body_min_rate=settings.body_min_rate),
        # Innermost, behind auth: only authorised uploads claim a progress token.
        Middleware(ProgressMiddleware, board=progress),
    ]
    app = Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.links = service.links
    app.state.tus = resumable
    app.state.progress = progress
    return app


def _storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        client = backends.s3_client(settings)  # first: it says which extra is missing
        from ingest.storage.s3 import S3Storage

        return S3Storage(client, settings.s3_bucket, part_size=settings.s3_part_size,
                         parts_in_flight=settings.s3_parts_in_flight, max_file_size=settings.max_file_size)
    if settings.storage != "local":
        raise ValueError(f"INGEST_STORAGE: unknown storage {settings.storage!r} (local or s3)")
    storage = LocalStorage(settings.data_dir, fsync=settings.fsync, write_behind=settings.write_behind)
    storage.prepare()
    return storage


def _catalog(settings: Settings) -> Catalog:
    if settings.catalog_url:
        backends.require_extra("postgres")
        from ingest.catalog.postgres import PostgresCatalog

        return PostgresCatalog(settings.catalog_url)
    return SqliteCatalog(settings.catalog_path)


def _partials(settings: Settings, storage: Storage) -> tuple[
        ResumableStorage, PostgresSessionLocks | FileSessionLocks | None, PostgresHandOver | None]:
    """tus partial uploads beside the blobs; on S3 with one session per upload across nodes
    (PostgreSQL advisory locks and hand-over requests when the catalog is PostgreSQL)."""
    if isinstance(storage, LocalStorage):
        partials = LocalPartials(storage, settings.data_dir)
        partials.prepare()
        return partials, None, None
    from ingest.storage.s3 import S3Storage
    from ingest.storage.s3_partials import S3Partials

    assert isinstance(storage, S3Storage)
    if settings.catalog_url:
        locks = PostgresSessionLocks(settings.catalog_url)
        return S3Partials(storage, locks), locks, PostgresHandOver(settings.catalog_url, locks)
    file_locks = FileSessionLocks(settings.data_dir / "locks")
    return S3Partials(storage, file_locks), file_locks, None


def _cors(settings: Settings) -> list[Middleware]:
    if not settings.cors_origins:
        return []
    return [Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                       allow_methods=[*tus.METHODS, "GET", "PUT"], allow_headers=list(tus.REQUEST_HEADERS),
                       expose_headers=list(tus.EXPOSED_HEADERS), max_age=86400)]


async def _sweep_periodically(service: UploadService) -> None:
    interval = min(3600.0, max(60.0, service.settings.temp_max_age / 4))
    while True:
        await anyio.sleep(interval)
        try:
            await service.sweep(temp_older_than=service.settings.temp_max_age)
        except Exception:
            log.exception("periodic sweep failed")
