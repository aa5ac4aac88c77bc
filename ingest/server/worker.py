"""The app factory every server process imports: tune the process, then build the app.

uvicorn imports `ingest.server.worker:create_app` in each worker process it starts, so
process-wide tuning (the allocator's, `ingest.server.tuning`) happens here, once per process.
`ingest.app.create_app`, which tests and embedding programs call in their own process, leaves
the process as it found it.
"""

from __future__ import annotations

from starlette.applications import Starlette

from ingest.app import create_app as create_ingest_app
from ingest.config import Settings
from ingest.server.tuning import tune_allocator


def create_app() -> Starlette:
    """The app for this process, from the INGEST_* variables `ingest.server.run.serve` exported."""
    tune_allocator()
    return create_ingest_app(Settings.from_env())
