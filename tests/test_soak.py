"""A bounded soak: many concurrent uploads of random sizes, multipart, raw and tus, against a real
server on loopback. Every acknowledged file must be in the catalog with the right bytes and
SHA-256, nothing else may be, no temporary file may remain, and the server's RSS stays bounded.

Uploads alternate multipart, raw PUT and tus. `make test` runs 120 uploads, all at once.
`make soak` runs 1,000 (INGEST_SOAK_UPLOADS) with
INGEST_SOAK_CONCURRENCY at a time and prints its figures.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import time
from pathlib import Path

import httpx

from tests.conftest import start_server, stop_server, stored_files, temp_files

MiB = 1024 * 1024
UPLOADS = int(os.environ.get("INGEST_SOAK_UPLOADS", "120"))
CONCURRENCY = int(os.environ.get("INGEST_SOAK_CONCURRENCY", "120"))
MAX_SIZE = int(os.environ.get("INGEST_SOAK_MAX_SIZE", str(2 * MiB)))
RSS_LIMIT = 400 * MiB
TUS = {"tus-resumable": "1.0.0"}


async def _one_upload(client: httpx.AsyncClient, index: int, rng: random.Random,
                      limit: asyncio.Semaphore) -> tuple[str, str, int]:
    size = rng.choice([0, 1, rng.randrange(1, 64 * 1024), rng.randrange(1, MAX_SIZE + 1)])
    content = rng.randbytes(size)
    async with limit:
        if index % 3 == 2:
            return await _tus_upload(client, index, content)
        if index % 3 == 1:
            answer = await client.post("/uploads", files={"file": (f"soak{index}.bin", content)})
        else:
            async def chunks() -> object:
                for start in range(0, len(content), 256 * 1024):
                    yield content[start:start + 256 * 1024]
                    await asyncio.sleep(0)
            answer = await client.put(f"/uploads/soak{index}.bin", content=chunks(),  # type: ignore[arg-type]
                                      headers={"content-length": str(size)})
    assert answer.status_code == 201, answer.text
    stored = answer.json()["files"][0]
    assert stored["sha256"] == hashlib.sha256(content).hexdigest() and stored["size"] == size
    return stored["id"], stored["sha256"], size


async def _tus_upload(client: httpx.AsyncClient, index: int, content: bytes) -> tuple[str, str, int]:
    """tus 1.0 (https://tus.io/protocols/resumable-upload): create, then one PATCH of two halves."""
    content = content or b"\x00"  # a tus upload of length 0 has no PATCH to answer with the file id
    name = base64.b64encode(f"soak{index}.bin".encode()).decode()
    created = await client.post("/files", headers={**TUS, "upload-length": str(len(content)),
                                                   "upload-metadata": f"filename {name}"})
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    half = len(content) // 2
    answer = None
    for offset, piece in ((0, content[:half]), (half, content[half:])):
        if not piece:
            continue
        answer = await client.patch(location, content=piece, headers={
            **TUS, "content-type": "application/offset+octet-stream", "upload-offset": str(offset)})
        assert answer.status_code == 204, answer.text
    assert answer is not None
    return answer.headers["ingest-file-id"], hashlib.sha256(content).hexdigest(), len(content)


async def _soak(url: str) -> list[tuple[str, str, int]]:
    rng = random.Random(1234)
    limit = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(120.0)) as client:
        return await asyncio.gather(*[_one_upload(client, index, rng, limit) for index in range(UPLOADS)])


def test_concurrent_uploads_are_all_kept_exactly_and_nothing_else(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--max-concurrent-uploads", str(max(256, CONCURRENCY)))
    try:
        started = time.monotonic()
        acknowledged = asyncio.run(_soak(server.url))
        elapsed = time.monotonic() - started
        listed: dict[str, dict[str, object]] = {}
        cursor = None
        while True:
            page = httpx.get(server.url + "/uploads", params={"limit": 1000, **({"cursor": cursor} if cursor else {})},
                             timeout=60).json()
            listed.update({item["id"]: item for item in page["items"]})
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert set(listed) == {file_id for file_id, _, _ in acknowledged}
        for file_id, digest, size in acknowledged:
            path = server.data_dir / "files" / file_id[:2] / file_id
            assert path.stat().st_size == size
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest == listed[file_id]["sha256"]
        assert len(stored_files(server.data_dir)) == len(acknowledged)
        assert temp_files(server.data_dir) == []
        peak = server.peak_rss_bytes()
        total = sum(size for _, _, size in acknowledged)
        print(f"soak: {len(acknowledged)} uploads ({total / MiB:.0f} MiB) at up to {CONCURRENCY} at once "
              f"in {elapsed:.1f} s; all present with the right sha256, none lost; server peak RSS {peak / MiB:.0f} MiB")
        assert peak < RSS_LIMIT, f"peak RSS {peak / MiB:.0f} MiB"
    finally:
        stop_server(server)
