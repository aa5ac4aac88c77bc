"""The operational side of an app: events and hooks, the health and metrics endpoints, live
progress, and what runs in the background for the app's life.

`app.py` calls `build_events` for the upload service, adds `routes` and runs `run_background`
in its lifespan; the access log and progress middlewares are in its middleware list.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence

import anyio
from prometheus_client import start_http_server
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ingest.config import Settings
from ingest.observe.events import DeliveryPolicy, EventHub, HookTarget
from ingest.observe.hooks import CallableTarget, HookCallable, WebhookTarget, parse_event_names
from ingest.observe.metrics import Metrics, mark_worker_dead, multiprocess_enabled
from ingest.observe.progress import stream_progress

log = logging.getLogger("ingest")

SHUTDOWN_GRACE = 5.0  # seconds queued post-* events get to go out when the server stops


def build_events(settings: Settings, hooks: Sequence[HookCallable | HookTarget] = ()) -> EventHub:
    targets: list[HookTarget] = []
    if settings.hook_url:
        targets.append(WebhookTarget(settings.hook_url, events=parse_event_names(settings.hook_events),
                                     max_response_size=settings.hook_max_response_size))
    for hook in hooks:
        targets.append(hook if hasattr(hook, "deliver") else CallableTarget(hook))  # type: ignore[arg-type]
    policy = DeliveryPolicy(timeout=settings.hook_timeout, retries=settings.hook_retries,
                            backoff=settings.hook_backoff, queue_size=settings.hook_queue_size,
                            fail_open=settings.hook_fail_open,
                            progress_interval=settings.hook_progress_interval)
    return EventHub(Metrics(), targets, policy)


def routes(settings: Settings) -> list[BaseRoute]:
    served: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"]),
                               Route("/uploads/progress/{token}", stream_progress, methods=["GET"])]
    if settings.metrics and not settings.metrics_port:
        served.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    return served


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics_endpoint(request: Request) -> Response:
    events: EventHub = request.app.state.service.events
    body, media_type = events.metrics.exposition()
    return Response(body, media_type=media_type)


@contextlib.asynccontextmanager
async def run_background(settings: Settings, events: EventHub) -> AsyncIterator[None]:
    """Hook delivery and, for a single process, the separate metrics port, around the app's life."""
    metrics_server = None
    if settings.metrics and settings.metrics_port and not multiprocess_enabled():
        # With several workers `ingest serve` itself serves the port from every worker's files.
        metrics_server, _thread = start_http_server(settings.metrics_port, addr=settings.host,
                                                    registry=events.metrics.registry)
    try:
        async with anyio.create_task_group() as background:
            background.start_soon(events.deliver_forever)
            try:
                yield
            finally:
                with anyio.CancelScope(shield=True):
                    await events.drain(SHUTDOWN_GRACE)
                background.cancel_scope.cancel()
    finally:
        events.close()
        with anyio.CancelScope(shield=True):
            for target in events.targets:
                close = getattr(target, "aclose", None)
                if close is not None:
                    await close()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        mark_worker_dead(os.getpid())

