"""FastAPI `UploadFile = File(...)`, in the two forms its docs and the common answers show.

- `POST /upload-def`: a `def` endpoint (run in the thread pool) doing `shutil.copyfileobj`;
- `POST /upload-async`: an `async def` endpoint reading `await file.read(1 MiB)` in a loop.
Both get the body only after python-multipart spooled all of it (see starlette_form).
"""

from __future__ import annotations

import shutil

from fastapi import FastAPI, File, UploadFile

from benchmarks.contenders._store import CHUNK, destination

app = FastAPI()


@app.post("/upload-def", status_code=201)
def upload_def(file: UploadFile = File(...)) -> dict[str, bool]:  # noqa: B008 - FastAPI's idiom
    with destination().open("wb") as out:
        shutil.copyfileobj(file.file, out, CHUNK)
    return {"stored": True}


@app.post("/upload-async", status_code=201)
async def upload_async(file: UploadFile = File(...)) -> dict[str, bool]:  # noqa: B008
    with destination().open("wb") as out:
        while chunk := await file.read(CHUNK):
            out.write(chunk)
    return {"stored": True}
