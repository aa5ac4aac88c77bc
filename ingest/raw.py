"""Raw request bodies (`curl -T`): the whole body is one file, streamed into one sink."""

from __future__ import annotations

from ingest.edge.body import RequestBody
from ingest.observe.context import RequestContext
from ingest.uploads import IncomingFile, UploadService


async def receive_raw(body: RequestBody, service: UploadService, *, filename: str,
                      content_type: str, expected_sha256: str | None,
                      request: RequestContext | None) -> IncomingFile:
    """Stream the body into a new sink; on any failure its temp file is discarded. `request`
    is the context it is received in (ingest/observe/context.py)."""
    incoming = await service.new_file(filename=filename, content_type=content_type, request=request,
                                      expected_sha256=expected_sha256)
    sink, read = incoming.sink, body.read
    try:
        while chunk := await read():
            if sink.add(chunk):
                await sink.flush()
        await service.finish(incoming)
    except BaseException:
        await service.discard([incoming])
        raise
    return incoming
