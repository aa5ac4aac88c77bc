"""One structured line per request; secrets never logged; uvicorn's access log replaced."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.config import Settings
from ingest.observe.accesslog import JsonFormatter, log_config
from tests.conftest import MULTIPART, app_client, file_part, multipart_body, start_server, stop_server


def access_fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [record.fields for record in caplog.records if record.name == "ingest.access"]  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_each_request_gets_one_line_with_its_id_protocol_sizes_and_outcome(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest.access")
    async with app_client(settings) as client:
        body = multipart_body([file_part("f", "a.bin", b"a" * 100)])
        created = await client.post("/uploads", headers={**MULTIPART, "x-request-id": "req-42"}, content=body)
        refused = await client.put("/uploads/b.bin", content=b"abc",
                                   headers={"content-digest": "sha-256=:" + "A" * 43 + "=:"})
    assert created.headers["x-request-id"] == "req-42"
    first, second = access_fields(caplog)
    assert first["request_id"] == "req-42"
    assert (first["method"], first["path"], first["protocol"], first["status"], first["outcome"]) == (
        "POST", "/uploads", "multipart", 201, "ok")
    assert first["bytes_in"] == len(body) and first["bytes_out"] == len(created.content)
    assert first["duration_ms"] >= 0 and first["error"] is None
    assert second["request_id"] == refused.headers["x-request-id"] != "req-42"
    assert (second["protocol"], second["status"], second["outcome"], second["error"]) == (
        "raw", 422, "error", "digest_mismatch")


@pytest.mark.anyio
async def test_tokens_query_strings_and_progress_tokens_never_reach_the_log(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ingest")
    async with app_client(settings.replace(tokens=("top-secret-token",))) as client:
        await client.get("/uploads?X-Amz-Signature=presigned-secret",
                         headers={"authorization": "Bearer top-secret-token"})
        await client.get("/uploads", headers={"authorization": "Bearer wrong-secret-value"})
        await client.put("/uploads/a.bin?progress=progress-secret", content=b"x",
                         headers={"authorization": "Bearer top-secret-token"})
        await client.get("/uploads/progress/progress-secret", headers={"authorization": "Bearer top-secret-token"})
    # Everything the server logged (the test's own httpx client logs URLs; it is not the server).
    server_records = [r for r in caplog.records if r.name.startswith("ingest")]
    text = "\n".join(r.getMessage() for r in server_records) + json.dumps(access_fields(caplog))
    assert len(access_fields(caplog)) == 4
    for secret in ("top-secret-token", "presigned-secret", "wrong-secret-value", "progress-secret"):
        assert secret not in text
    assert [f["status"] for f in access_fields(caplog)] == [200, 401, 201, 200]


@pytest.mark.anyio
async def test_the_access_log_can_be_switched_off(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest.access")
    async with app_client(settings.replace(access_log=False)) as client:
        response = await client.get("/healthz")
    assert access_fields(caplog) == [] and response.headers["x-request-id"]


@pytest.mark.anyio
async def test_a_path_with_a_newline_cannot_forge_a_log_line(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest.access")
    async with app_client(settings) as client:
        await client.put("/uploads/a%0A2026-01-01 INFO forged.bin", content=b"x")
    [record] = [r for r in caplog.records if r.name == "ingest.access"]
    assert "\n" not in record.getMessage()
    assert record.fields["path"] == "/uploads/a\\x0a2026-01-01 INFO forged.bin"  # type: ignore[attr-defined]


def test_the_json_formatter_writes_one_object_with_the_records_fields() -> None:
    record = logging.LogRecord("ingest.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.fields = {"status": 200}
    line = JsonFormatter().format(record)
    assert json.loads(line) | {"time": None} == {"time": None, "level": "info", "logger": "ingest.access",
                                                   "status": 200, "message": "GET /x"}


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError):
        log_config("xml")


def test_a_json_logging_server_writes_only_json_lines_and_no_uvicorn_access_line(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--log-format", "json")
    try:
        response = httpx.put(server.url + "/uploads/c.bin", content=b"12345")
        assert response.status_code == 201
    finally:
        stop_server(server)
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    uploads = [line for line in lines if line.get("path") == "/uploads/c.bin"]
    assert len(uploads) == 1
    assert (uploads[0]["protocol"], uploads[0]["status"], uploads[0]["client"]) == ("raw", 201, "127.0.0.1")
    assert uploads[0]["request_id"] == response.headers["x-request-id"]
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
