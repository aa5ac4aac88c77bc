"""The command line: flags map onto Settings; client commands talk to a real server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ingest import cli
from ingest.config import Settings
from tests.conftest import LiveServer, wait_until


def test_serve_flags_become_settings_and_reach_uvicorn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: calls.update(app=app, **kwargs))
    # `serve` exports its settings for the worker processes: into a copy, not into the
    # environment every later test's servers inherit.
    monkeypatch.setattr(os, "environ", os.environ.copy())
    monkeypatch.setenv("INGEST_MAX_PARTS", "12")
    for name in list(os.environ):
        if name.startswith("INGEST_") and name != "INGEST_MAX_PARTS":
            monkeypatch.delenv(name)
    exit_code = cli.main(["serve", "--port", "9123", "--data-dir", str(tmp_path), "--no-fsync",
                          "--max-file-size", "5GiB", "--tokens", "a,b", "--workers", "3", "--proxy-headers",
                          "--forwarded-allow-ips", "10.0.0.0/8"])
    assert exit_code == 0
    assert calls["app"] == "ingest.server.worker:create_app" and calls["factory"] is True
    assert calls["http"].keywords == {"header_timeout": Settings().header_timeout}
    assert (calls["port"], calls["workers"], calls["proxy_headers"]) == (9123, 3, True)
    assert calls["forwarded_allow_ips"] == "10.0.0.0/8"
    # Worker processes rebuild the settings from the environment the CLI exported.
    assert Settings.from_env() == Settings(
        port=9123, data_dir=tmp_path, fsync=False, max_file_size=5 * 1024**3, tokens=("a", "b"),
        workers=3, proxy_headers=True, forwarded_allow_ips="10.0.0.0/8", max_parts=12)


def test_serve_help_lists_every_setting_with_its_variable() -> None:
    help_text = subprocess.run([sys.executable, "-m", "ingest", "serve", "--help"],
                               capture_output=True, text=True, check=True).stdout
    for name in Settings.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in help_text
        assert "INGEST_" + name.upper() in help_text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingest", *args], capture_output=True, text=True, timeout=120)


def test_upload_ls_and_rm_against_a_real_server(live_server: LiveServer, tmp_path: Path) -> None:
    files = []
    for n in range(2):
        path = tmp_path / f"file {n}.bin"
        path.write_bytes(os.urandom(3 * 1024 * 1024 + n))
        files.append(path)
    result = run_cli("upload", "--url", live_server.url, "--quiet", *map(str, files))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, files, strict=True):
        _file_id, digest, size, name = line.split(None, 3)
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (int(size), name) == (path.stat().st_size, str(path))
    listing = run_cli("ls", "--url", live_server.url)
    assert {line.split()[0] for line in listing.stdout.splitlines()} == {line.split()[0] for line in lines}
    assert run_cli("rm", "--url", live_server.url, lines[0].split()[0]).returncode == 0
    missing = run_cli("rm", "--url", live_server.url, lines[0].split()[0])
    assert missing.returncode == 1 and "404 not_found" in missing.stderr


def test_upload_shows_a_progress_bar_and_reports_server_errors(tmp_path: Path, live_server: LiveServer) -> None:
    path = tmp_path / "p.bin"
    path.write_bytes(b"x" * 2_000_000)
    result = run_cli("upload", "--url", live_server.url, str(path))
    assert result.returncode == 0
    assert "p.bin" in result.stderr and "100%" in result.stderr
    refused = run_cli("upload", "--url", live_server.url, "--token", "x", "--quiet", str(tmp_path / "absent.bin"))
    assert refused.returncode == 1 and "absent.bin" in refused.stderr


def test_download_verifies_resumes_and_never_overwrites_a_different_file(
        live_server: LiveServer, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    body = os.urandom(3 * 1024 * 1024)
    source.write_bytes(body)
    uploaded = run_cli("upload", "--url", live_server.url, str(source))
    assert uploaded.returncode == 0, uploaded.stderr
    assert "sha256 verified against the local file" in uploaded.stderr
    file_id, digest = uploaded.stdout.split()[:2]

    out = tmp_path / "out"
    out.mkdir()
    fetched = run_cli("download", "--url", live_server.url, file_id, "-o", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(out / "source.bin")
    assert (out / "source.bin").read_bytes() == body
    assert "sha256 verified against the catalog" in fetched.stderr and "100%" in fetched.stderr

    # An interrupted download: the first MiB is in the .part file, with the ETag it came with.
    target = out / "again.bin"
    partial = out / f".again.bin.{file_id}.part"
    partial.write_bytes(body[:1024 * 1024])
    partial.with_name(partial.name + ".etag").write_text(f'"{digest}"')
    resumed = run_cli("download", "--url", live_server.url, "--quiet", file_id, "-o", str(target))
    assert resumed.returncode == 0, resumed.stderr
    assert target.read_bytes() == body and not partial.exists()
    # The server sent only the rest (its access-log line may land just after the client is done).
    assert wait_until(lambda: any(f"/uploads/{file_id}/content" in line and " 206 " in line
                                  for line in live_server.log().splitlines()), timeout=10)

    other = out / "mine.bin"
    other.write_bytes(b"someone else's file")
    refused = run_cli("download", "--url", live_server.url, "--quiet", file_id, "-o", str(other))
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert other.read_bytes() == b"someone else's file"
    forced = run_cli("download", "--url", live_server.url, "--quiet", "--force", file_id, "-o", str(other))
    assert forced.returncode == 0 and other.read_bytes() == body
