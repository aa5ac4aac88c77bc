"""Live progress over Server-Sent Events, followed by a real SSE client (httpx-sse)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from ingest.config import Settings
from tests.conftest import app_client, start_server, stop_server

MiB = 1024 * 1024
BOUNDARY = "pr0gress"


def follow(url: str, events: list[tuple[str, dict[str, Any]]], connected: threading.Event) -> None:
    """Read the stream until it ends, recording (event, data) pairs."""
    with httpx.Client(timeout=httpx.Timeout(120.0)) as client, connect_sse(client, "GET", url) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        connected.set()
        for message in source.iter_sse():
            events.append((message.event, json.loads(message.data)))


def multipart_stream(size: int, digest: Any) -> tuple[int, Iterator[bytes]]:
    """A one-file multipart body of `size` pseudo-random bytes made on the fly, and its length."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = os.urandom(4 * MiB)

    def chunks() -> Iterator[bytes]:
        yield head
        for index in range(size // len(block)):
            varied = index.to_bytes(4, "big") + block[4:]
            digest.update(varied)
            yield varied
        yield tail

    return len(head) + size + len(tail), chunks()


@pytest.mark.slow
def test_an_sse_client_follows_a_512_mib_multipart_upload_to_its_stored_id(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync")
    try:
        token = "upload-" + os.urandom(8).hex()
        events: list[tuple[str, dict[str, Any]]] = []
        connected = threading.Event()
        # The stream is opened first: it waits for the upload that will carry the token.
        watcher = threading.Thread(target=follow, daemon=True,
                                   args=(f"{server.url}/uploads/progress/{token}", events, connected))
        watcher.start()
        assert connected.wait(30)
        digest = hashlib.sha256()
        length, body = multipart_stream(512 * MiB, digest)
        response = httpx.post(f"{server.url}/uploads?progress={token}", content=body, timeout=300,
                              headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}",
                                       "content-length": str(length)})
        assert response.status_code == 201, response.text
        watcher.join(60)
        assert not watcher.is_alive()
    finally:
        stop_server(server)
        shutil.rmtree(server.data_dir, ignore_errors=True)

    progress = [data for name, data in events if name == "progress"]
    received = [data["received"] for data in progress]
    print(f"{len(progress)} progress events over a 512 MiB upload")
    assert len(set(received)) >= 5
    assert all(a <= b for a, b in itertools.pairwise(received)), "byte counts never go back"
    assert len(progress) == len({(data["received"], data["files_finished"]) for data in progress}), \
        "every progress event brings news"
    assert received[-1] == length
    assert all(data["expected"] == length for data in progress)
    assert progress[-1]["files_finished"] == 1
    assert any(data["rate"] > 0 for data in progress)
    (final_name, final), *_ = [event for event in events if event[0] != "progress"]
    assert events[-1][0] == final_name == "complete"
    stored = final["files"][0]
    assert final["status"] == 201
    assert stored["sha256"] == digest.hexdigest() == response.json()["files"][0]["sha256"]
    assert stored["id"] == response.json()["files"][0]["id"]
    assert stored["size"] == 512 * MiB


@pytest.mark.anyio
async def test_a_refused_upload_ends_its_stream_with_the_error(settings: Settings) -> None:
    async with app_client(settings) as client:
        refused = await client.put("/uploads/x.bin?progress=token-1234", content=b"abc",
                                   headers={"content-digest": "sha-256=:" + "A" * 43 + "=:"})
        assert refused.status_code == 422
        # Read after the fact: the result is kept for late readers.
        stream = await client.get("/uploads/progress/token-1234")
    assert stream.headers["content-type"].startswith("text/event-stream")
    names = [line.removeprefix("event: ").strip() for line in stream.text.splitlines() if line.startswith("event:")]
    assert names[-1] == "failed" and set(names[:-1]) == {"progress"}
    failed = json.loads([line for line in stream.text.splitlines() if line.startswith("data:")][-1][5:])
    assert (failed["status"], failed["error"]) == (422, "digest_mismatch")


@pytest.mark.anyio
async def test_the_header_form_of_the_token_works_too(settings: Settings) -> None:
    async with app_client(settings) as client:
        response = await client.put("/uploads/y.bin", content=b"hello", headers={"x-progress-id": "hdr-token-99"})
        assert response.status_code == 201
        stream = await client.get("/uploads/progress/hdr-token-99")
    assert "event: complete" in stream.text and response.json()["files"][0]["sha256"] in stream.text


@pytest.mark.anyio
@pytest.mark.parametrize("token", ["short", "has space in it", "x" * 129, "semi;colon;"])
async def test_malformed_progress_tokens_are_refused(settings: Settings, token: str) -> None:
    async with app_client(settings) as client:
        response = await client.put("/uploads/z.bin", params={"progress": token}, content=b"abc")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert not list((settings.data_dir / "files").glob("*/*"))
