"""The Python bound: a bare Starlette endpoint writing `request.stream()` chunks to a file.

No parsing, no hashing, no thread hand-off: what uvicorn + Starlette cost to move a body
to disk. `app_tuned` is the same after ingest's own allocator tuning (ingest/server/tuning.py),
so ingest can be compared with the bound under the same process settings.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.contenders._store import destination


async def upload(request: Request) -> JSONResponse:
    with destination().open("wb") as out:
        async for chunk in request.stream():
            out.write(chunk)
    return JSONResponse({"stored": True}, status_code=201)


app = Starlette(routes=[Route("/upload", upload, methods=["POST", "PUT"])])


def app_tuned() -> Starlette:
    """Factory: tune glibc malloc as ingest does at start-up, then the same app."""
    from ingest.server.tuning import tune_allocator

    tune_allocator()
    return app
