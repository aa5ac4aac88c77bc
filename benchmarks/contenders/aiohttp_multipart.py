"""aiohttp's `MultipartReader` streaming the file part to disk (`python -m` this module).

As aiohttp's docs show it ("Reading multipart/form-data"), with `read_chunk` asked for
1 MiB instead of its 8 KiB default, the better of the two here; default asyncio loop, as
`web.run_app` starts it. No hashing.
"""

from __future__ import annotations

import argparse

from aiohttp import BodyPartReader, web

from benchmarks.contenders._store import CHUNK, destination


async def upload(request: web.Request) -> web.Response:
    reader = await request.multipart()
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name != "file":
        return web.json_response({"error": "no file part"}, status=400)
    with destination().open("wb") as out:
        while chunk := await part.read_chunk(CHUNK):
            out.write(chunk)
    return web.json_response({"stored": True}, status=201)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=0)  # 0: no body size limit (default 1 MiB)
    app.router.add_post("/upload", upload)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
