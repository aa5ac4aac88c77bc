"""`serve(settings)`: the one place uvicorn is started, with every option ingest depends on.

Settings reach the worker processes two ways. The protocol gets its own from
`protocol_factory`, which uvicorn pickles with its config into each spawned worker. The app is
named by an import string (uvicorn requires one for `workers > 1`), so each worker rebuilds
Settings from the INGEST_* variables exported here, in `ingest.server.worker`.
"""

from __future__ import annotations

import asyncio
import os
from typing import cast

import uvicorn

from ingest.config import Settings
from ingest.observe.accesslog import log_config
from ingest.server.protocol import protocol_factory

APP_FACTORY = "ingest.server.worker:create_app"
# Longer than any proxy's upstream keep-alive (deploy/nginx/ingest.conf: 60 s), so the proxy
# closes idle connections first and never reuses one uvicorn is closing (intermittent 502s).
KEEP_ALIVE_TIMEOUT = 75  # seconds; uvicorn's default is 5


def serve(settings: Settings) -> None:
    """Run the server until it is stopped, with as many worker processes as settings say."""
    os.environ.update(settings.to_env())
    # uvicorn's `http=` is typed as a protocol class, but uvicorn only calls it with the
    # class's keyword arguments (`Server.startup`'s `create_protocol`): a factory does.
    protocol = cast("type[asyncio.Protocol]", protocol_factory(settings.header_timeout))
    uvicorn.run(
        APP_FACTORY, factory=True, host=settings.host, port=settings.port,
        workers=settings.workers, proxy_headers=settings.proxy_headers,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        loop="uvloop", http=protocol, log_level="info",
        timeout_graceful_shutdown=settings.shutdown_grace,
        log_config=log_config(settings.log_format),
        # Our access log (ingest.observe.accesslog) replaces uvicorn's when it is on.
        access_log=not settings.access_log,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
    )
