"""The start-up banner: in process from Settings, and as JSON lines from a real server."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ingest.config import Settings
from ingest.server.banner import banner, redact_url
from tests.conftest import start_server, stop_server


def messages(settings: Settings) -> list[str]:
    return [message for _, message, _ in banner(settings)]


def test_banner_names_the_absolute_data_dir_backends_limits_and_urls(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = "\n".join(messages(Settings(data_dir=Path("data"), port=8123)))
    assert f"data directory: {tmp_path / 'data'}" in text
    assert f"storage: local files in {tmp_path / 'data' / 'files'}" in text
    assert f"catalog: SQLite {tmp_path / 'data' / 'catalog.sqlite3'}" in text
    assert "auth: off" in text
    assert "file 64GiB, request 64GiB, 256 uploads at once per worker" in text
    assert "unfinished tus uploads kept 24 h" in text
    for path in ("/", "/files/", "/openapi.json", "/docs"):
        assert f"http://127.0.0.1:8123{path} " in text + " "


def test_listening_beyond_loopback_without_tokens_warns(tmp_path: Path) -> None:
    exposed = banner(Settings(data_dir=tmp_path, host="0.0.0.0"))
    warnings = [message for level, message, _ in exposed if level == logging.WARNING]
    assert len(warnings) == 1 and "0.0.0.0 with no tokens" in warnings[0]
    for quiet in (Settings(data_dir=tmp_path, host="0.0.0.0", tokens=("t",)),
                  Settings(data_dir=tmp_path, host="::1"), Settings(data_dir=tmp_path, host="localhost")):
        assert [m for level, m, _ in banner(quiet) if level == logging.WARNING] == []
    assert "auth: on, 1 bearer token" in messages(Settings(data_dir=tmp_path, tokens=("t",)))


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://ingest:s3cret@db:5432/ingest", "postgresql://ingest:***@db:5432/ingest"),
    ("postgresql://db/ingest?user=me&password=s3cret", "postgresql://db/ingest?user=me&password=***"),
    ("host=db user=me password='s3 cret' dbname=ingest", "host=db user=me password=*** dbname=ingest"),
    ("postgresql://db/ingest", "postgresql://db/ingest"),
])
def test_catalog_passwords_are_redacted(url: str, shown: str, tmp_path: Path) -> None:
    assert redact_url(url) == shown
    text = "\n".join(messages(Settings(data_dir=tmp_path, catalog_url=url)))
    assert shown in text and "s3cret" not in text and "s3 cret" not in text


def test_a_server_with_json_logs_prints_the_banner_as_json_lines(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--log-format", "json", "--tokens", "secret-token")
    try:
        records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    finally:
        stop_server(server)
    by_kind = {record["banner"]: record for record in records if "banner" in record}
    assert set(by_kind) >= {"data_dir", "storage", "catalog", "auth", "limits", "urls"}
    assert by_kind["data_dir"]["data_dir"] == str((tmp_path / "data").resolve())
    assert (by_kind["auth"]["auth"], by_kind["auth"]["tokens"]) == (True, 1)
    assert by_kind["limits"]["max_file_size"] == 64 * 1024**3
    assert by_kind["urls"]["docs"] == f"{server.url}/docs"
    assert "secret-token" not in server.log()
