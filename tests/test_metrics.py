"""GET /metrics: values move with real uploads; the exposition parses; where it is served."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from ingest.config import Settings
from tests.conftest import MULTIPART, app_client, file_part, free_port, multipart_body, start_server, stop_server
from tests.prom import samples, value

MiB = 1024 * 1024


@pytest.mark.anyio
async def test_metrics_follow_a_stored_upload_and_a_rejected_one(settings: Settings) -> None:
    async with app_client(settings) as client:
        before = (await client.get("/metrics")).text
        assert value(before, "ingest_uploads_started_total", protocol="multipart") == 0
        body = multipart_body([file_part("f", "a.bin", b"a" * 3000)])
        assert (await client.post("/uploads", headers=MULTIPART, content=body)).status_code == 201
        assert (await client.put("/uploads/b.bin", content=b"b" * 500)).status_code == 201
        wrong = await client.put("/uploads/c.bin", content=b"c" * 700,
                                 headers={"content-digest": "sha-256=:" + "A" * 43 + "=:"})
        assert wrong.status_code == 422
        after = (await client.get("/metrics")).text
    assert value(after, "ingest_uploads_started_total", protocol="multipart") == 1
    assert value(after, "ingest_uploads_finished_total", protocol="multipart") == 1
    assert value(after, "ingest_received_bytes_total", protocol="multipart") == 3000
    assert value(after, "ingest_uploads_started_total", protocol="raw") == 2
    assert value(after, "ingest_uploads_finished_total", protocol="raw") == 1
    assert value(after, "ingest_uploads_failed_total", protocol="raw", error="digest_mismatch") == 1
    assert value(after, "ingest_digest_mismatches_total", protocol="raw") == 1
    assert value(after, "ingest_received_bytes_total", protocol="raw") == 1200
    assert value(after, "ingest_upload_size_bytes_count", protocol="raw") == 1
    assert value(after, "ingest_upload_size_bytes_sum", protocol="raw") == 500
    assert value(after, "ingest_upload_size_bytes_bucket", protocol="raw", le="1024.0") == 1
    assert value(after, "ingest_upload_duration_seconds_count", protocol="multipart") == 1
    assert value(after, "ingest_uploads_in_progress", protocol="raw") == 0
    assert value(after, "ingest_temp_bytes") == 0
    assert value(after, "ingest_requests_total", protocol="raw", outcome="ok", error="") == 1
    assert value(after, "ingest_requests_total", protocol="raw", outcome="error", error="digest_mismatch") == 1


@pytest.mark.anyio
async def test_a_request_refused_before_any_upload_began_is_counted(settings: Settings) -> None:
    async with app_client(settings) as client:
        response = await client.post("/uploads", content=b"x" * 50, headers={"content-type": "text/plain"})
        assert response.status_code == 415
        text = (await client.get("/metrics")).text
    assert value(text, "ingest_requests_total", protocol="raw", outcome="error", error="unsupported_media_type") == 1
    assert value(text, "ingest_uploads_started_total", protocol="raw") == 0


@pytest.mark.anyio
async def test_metrics_need_a_token_when_tokens_are_set(settings: Settings) -> None:
    async with app_client(settings.replace(tokens=("s3cret",))) as client:
        assert (await client.get("/metrics")).status_code == 401
        response = await client.get("/metrics", headers={"authorization": "Bearer s3cret"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert samples(response.text)


@pytest.mark.anyio
async def test_metrics_can_be_switched_off(settings: Settings) -> None:
    async with app_client(settings.replace(metrics=False)) as client:
        assert (await client.get("/metrics")).status_code == 404


def test_a_separate_metrics_port_serves_them_without_auth(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(tmp_path / "data", "--no-fsync", "--metrics-port", str(port), "--tokens", "tok")
    try:
        auth = {"authorization": "Bearer tok"}
        assert httpx.put(server.url + "/uploads/x.bin", content=b"12345", headers=auth).status_code == 201
        assert httpx.get(server.url + "/metrics", headers=auth).status_code == 404
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert value(text, "ingest_uploads_finished_total", protocol="raw") == 1
    finally:
        stop_server(server)


def test_metrics_add_up_across_worker_processes(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    metrics_port = free_port()
    server = start_server(tmp_path / "data", "--no-fsync", "--workers", "2", "--metrics-port", str(metrics_port),
                          env={"TMPDIR": str(scratch)})
    try:
        assert len(list(scratch.glob("ingest-metrics-*"))) == 1, "serve made one PROMETHEUS_MULTIPROC_DIR"
        uploads = 8
        for n in range(uploads):
            # A new connection each time, so the kernel may spread them over both workers.
            with httpx.Client() as client:
                assert client.put(f"{server.url}/uploads/{n}.bin", content=os.urandom(MiB)).status_code == 201
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        # The multiprocess collector, not one worker's registry, answered: it has no *_created.
        assert "_created" not in text
        assert value(text, "ingest_uploads_finished_total", protocol="raw") == uploads
        assert value(text, "ingest_received_bytes_total", protocol="raw") == uploads * MiB
        assert value(text, "ingest_uploads_in_progress", protocol="raw") == 0
    finally:
        stop_server(server)
    assert "Traceback" not in server.log()
    assert list(scratch.glob("ingest-metrics-*")) == [], "the directory is removed when serve exits"
