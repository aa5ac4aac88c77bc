"""The naive streaming-form-data endpoint: the recipe ingest must beat, with nothing else.

streaming-form-data fed from `request.stream()` on the event loop, one target writing each
chunk with `os.write` as it comes (on the loop too), no guards, no limits, no fsync. `app`
stores only; `app_sha256` also hashes each chunk inline, so every byte gets what ingest
gives it (SHA-256 and one write) and nothing more.
"""

from __future__ import annotations

import hashlib
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget

from benchmarks.contenders._store import destination


class WritingTarget(BaseTarget):  # type: ignore[misc]
    """Opens a fresh file when the part starts, `os.write`s each chunk, closes it at the end."""

    def __init__(self, *, sha256: bool) -> None:
        super().__init__()
        self.fd = -1
        self.digest = hashlib.sha256() if sha256 else None

    def on_start(self) -> None:
        self.fd = os.open(destination(), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def on_data_received(self, chunk: bytes) -> None:
        if self.digest is not None:
            self.digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view):]

    def on_finish(self) -> None:
        os.close(self.fd)


def _endpoint(*, sha256: bool) -> Starlette:
    async def upload(request: Request) -> JSONResponse:
        parser = StreamingFormDataParser(headers=request.headers)
        target = WritingTarget(sha256=sha256)
        parser.register("file", target)
        async for chunk in request.stream():
            parser.data_received(chunk)
        digest = target.digest.hexdigest() if target.digest is not None else None
        return JSONResponse({"stored": True, "sha256": digest}, status_code=201)

    return Starlette(routes=[Route("/upload", upload, methods=["POST"])])


app = _endpoint(sha256=False)
app_sha256 = _endpoint(sha256=True)
