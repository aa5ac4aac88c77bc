"""tus uploads in the event model: hooks (a real receiver, a real tus client) and metrics."""

from __future__ import annotations

import base64
import gc
import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.config import Settings
from tests.conftest import app_client, start_server, stop_server, stored_files
from tests.hook_receiver import hook_receiver
from tests.prom import value
from tests.test_tus_live import TUSPY_LEAKS_FILES, tusclient

MiB = 1024 * 1024
TUS = {"tus-resumable": "1.0.0"}
OCTETS = {**TUS, "content-type": "application/offset+octet-stream"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def partial_uploads(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "tus").glob("*")) if (data_dir / "tus").exists() else []


@TUSPY_LEAKS_FILES
def test_a_webhook_receives_every_event_of_a_tus_upload_in_order(tmp_path: Path) -> None:
    path = tmp_path / "clip.bin"
    path.write_bytes(os.urandom(3 * MiB + 5))
    with hook_receiver() as receiver:
        server = start_server(tmp_path / "data", "--no-fsync", "--hook-url", receiver.url,
                              "--hook-progress-interval", "0", "--hook-forward-headers", "x-tenant")
        try:
            def upload() -> str:
                client = tusclient().TusClient(server.url + "/files/", headers={"x-tenant": "acme"})
                uploader = client.uploader(str(path), chunk_size=MiB,
                                           metadata={"filename": "clip.bin", "project": "x"})
                uploader.upload()
                return str(uploader.url)

            upload_id = upload().rstrip("/").rsplit("/", 1)[-1]
            gc.collect()  # tuspy's leaked files are reclaimed here, under this test's warning filter
            assert receiver.wait_for(lambda: "post-finish" in receiver.events_of(upload_id))
            with receiver.lock:
                deliveries = [d for d in receiver.deliveries if d.upload["id"] == upload_id]
            [item] = httpx.get(server.url + "/uploads").json()["items"]
        finally:
            stop_server(server)
    in_sequence = [d.type for d in sorted(deliveries, key=lambda d: d.upload["sequence"])]
    assert in_sequence[:2] == ["pre-create", "post-create"]
    assert in_sequence[-2:] == ["pre-finish", "post-finish"]
    assert set(in_sequence[2:-2]) == {"post-receive"}
    posts = [d.upload["sequence"] for d in deliveries if d.type.startswith("post-")]
    assert posts == sorted(posts)
    finished = next(d.upload for d in deliveries if d.type == "post-finish")
    assert item["id"] == upload_id, "a tus upload is stored under its upload id"
    assert (finished["protocol"], finished["filename"], finished["size"], finished["expected_size"]) == (
        "tus", "clip.bin", 3 * MiB + 5, 3 * MiB + 5)
    assert finished["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == item["sha256"]
    assert finished["metadata"] == {"project": "x"} and finished["client"] == "127.0.0.1"
    assert all(d.headers.get("x-tenant") == "acme" for d in deliveries)


def test_tus_pre_create_and_pre_finish_rejections_leave_nothing(tmp_path: Path) -> None:
    def refuse(event_type: str, upload: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        if event_type == "pre-create" and upload["filename"] == "refused.bin":
            return 200, {"reject": True, "status": 451, "message": "not this one"}
        if event_type == "pre-finish":
            return 200, {"reject": True, "status": 409, "message": "a copy is already stored"}
        return 200, None

    with hook_receiver() as receiver:
        receiver.answer = refuse
        server = start_server(tmp_path / "data", "--no-fsync", "--hook-url", receiver.url)
        try:
            refused = httpx.post(server.url + "/files/", headers={
                **TUS, "upload-length": "5", "upload-metadata": f"filename {b64('refused.bin')}"})
            assert refused.status_code == 451
            assert refused.json() == {"error": "hook_rejected", "detail": "not this one"}
            created = httpx.post(server.url + "/files/", headers={
                **TUS, "upload-length": "5", "upload-metadata": f"filename {b64('late.bin')}"})
            assert created.status_code == 201
            url = httpx.URL(server.url).join(created.headers["location"])
            finished = httpx.patch(url, content=b"hello", headers={**OCTETS, "upload-offset": "0"})
            assert finished.status_code == 409
            assert finished.json()["error"] == "hook_rejected"
            assert httpx.head(url, headers=TUS).status_code == 404
            assert httpx.get(server.url + "/uploads").json()["items"] == []
            assert stored_files(server.data_dir) == [] and partial_uploads(server.data_dir) == []
            assert receiver.wait_for(lambda: len(receiver.of_type("post-terminate")) == 2)
            metrics = httpx.get(server.url + "/metrics").text
        finally:
            stop_server(server)
    assert value(metrics, "ingest_uploads_failed_total", protocol="tus", error="hook_rejected") == 2
    assert value(metrics, "ingest_uploads_in_progress", protocol="tus") == 0


@pytest.mark.anyio
async def test_metrics_follow_a_tus_upload_across_patches_and_a_termination(settings: Settings) -> None:
    async with app_client(settings) as client:
        location = (await client.post("/files/", headers={
            **TUS, "upload-length": "3000", "upload-metadata": f"filename {b64('t.bin')}"})).headers["location"]
        assert (await client.patch(location, content=b"a" * 1000,
                                   headers={**OCTETS, "upload-offset": "0"})).status_code == 204
        middle = (await client.get("/metrics")).text
        assert (await client.patch(location, content=b"a" * 2000,
                                   headers={**OCTETS, "upload-offset": "1000"})).status_code == 204
        other = (await client.post("/files/", headers={**TUS, "upload-length": "10"})).headers["location"]
        assert (await client.patch(other, content=b"b" * 4,
                                   headers={**OCTETS, "upload-offset": "0"})).status_code == 204
        assert (await client.delete(other, headers=TUS)).status_code == 204
        after = (await client.get("/metrics")).text
    assert value(middle, "ingest_uploads_in_progress", protocol="tus") == 1
    assert value(middle, "ingest_temp_bytes") == 1000
    assert value(middle, "ingest_received_bytes_total", protocol="tus") == 1000
    assert value(after, "ingest_uploads_started_total", protocol="tus") == 2
    assert value(after, "ingest_uploads_finished_total", protocol="tus") == 1
    assert value(after, "ingest_uploads_failed_total", protocol="tus", error="terminated") == 1
    assert value(after, "ingest_received_bytes_total", protocol="tus") == 3004
    assert value(after, "ingest_upload_size_bytes_sum", protocol="tus") == 3000
    assert value(after, "ingest_uploads_in_progress", protocol="tus") == 0
    assert value(after, "ingest_temp_bytes") == 0
