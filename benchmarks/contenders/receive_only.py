"""The receive-only bound: uvicorn + Starlette reading a body and discarding it.

What moving the bytes from the socket into Python costs, under ingest's allocator tuning: the
floor under any server that does something with them. It answers the byte count it
received, which the harness checks against the body it sent (nothing is stored).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def receive(request: Request) -> JSONResponse:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
    return JSONResponse({"received": received}, status_code=200)


def app_tuned() -> Starlette:
    """Factory: tune glibc malloc as ingest does at start-up, then the app."""
    from ingest.server.tuning import tune_allocator

    tune_allocator()
    return Starlette(routes=[Route("/upload", receive, methods=["POST", "PUT"])])
