"""Starlette `await request.form()` + copy of the `UploadFile` in 1 MiB chunks (the seed's recipe).

python-multipart parses the body into a `SpooledTemporaryFile` (kept in memory up to 1 MiB,
then a file in the temp dir) before the handler runs; the handler copies it to its
destination: every byte is written twice. Limits: Starlette 1.x's `max_part_size` bounds
text fields only and `max_files`/`max_fields` default to 1000, so a multi-GB single-file
upload needs nothing raised; they are passed explicitly so the recipe stays valid if the
defaults change.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.contenders._store import CHUNK, destination


async def upload(request: Request) -> JSONResponse:
    async with request.form(max_files=1000, max_fields=1000, max_part_size=1024 * 1024) as form:
        upload_file = form["file"]
        assert isinstance(upload_file, UploadFile)
        with destination().open("wb") as out:
            while chunk := await upload_file.read(CHUNK):
                out.write(chunk)
    return JSONResponse({"stored": True}, status_code=201)


app = Starlette(routes=[Route("/upload", upload, methods=["POST"])])
