"""Bare Starlette `FileResponse` of a file in $BENCH_STORE_DIR/files: the usual Python download.

Its defaults as they are (64 KiB reads, each a thread hop, under uvicorn); no auth, no ETag of
our own, nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route


async def download(request: Request) -> FileResponse:
    # The path parameter cannot hold "/", so the name stays inside the files directory.
    return FileResponse(Path(os.environ["BENCH_STORE_DIR"]) / "files" / request.path_params["name"])


app = Starlette(routes=[Route("/files/{name}", download, methods=["GET", "HEAD"])])
