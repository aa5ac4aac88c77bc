"""ingest.server: how `ingest serve` starts uvicorn, and what each server process does first.

The settings reach each connection's protocol through the factory handed to uvicorn (pickled
into spawned workers), never through the environment; the allocator is tuned by the server's
app factory in every worker, never by `ingest.app.create_app`."""

from __future__ import annotations

import ctypes.util
import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from ingest.config import Settings
from ingest.server import run, tuning, worker
from ingest.server.protocol import HeaderDeadlineProtocol
from tests.conftest import start_server, stop_server


def _serve(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> dict[str, Any]:
    calls: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: calls.update(app=app, **kwargs))
    monkeypatch.setattr(os, "environ", os.environ.copy())  # serve exports settings: into a copy
    run.serve(settings)
    return calls


def test_serve_hands_uvicorn_the_worker_factory_and_a_protocol_factory_with_the_header_timeout(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _serve(monkeypatch, Settings(data_dir=tmp_path, header_timeout=7, workers=2))
    assert calls["app"] == run.APP_FACTORY == "ingest.server.worker:create_app"
    assert calls["factory"] is True and calls["workers"] == 2
    assert calls["timeout_keep_alive"] == run.KEEP_ALIVE_TIMEOUT
    # With workers > 1 uvicorn pickles its Config into each spawned process: the protocol
    # factory must survive that and still carry the setting.
    config = uvicorn.Config(calls.pop("app"), **calls)
    http = pickle.loads(pickle.dumps(config)).http
    assert http.func is HeaderDeadlineProtocol and http.keywords == {"header_timeout": 7}
    assert Settings.from_env() == Settings(data_dir=tmp_path, header_timeout=7, workers=2)


def test_the_worker_factory_tunes_the_process_then_builds_the_app_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    steps: list[object] = []
    monkeypatch.setattr(worker, "tune_allocator", lambda: steps.append("tuned") or True)
    monkeypatch.setattr(worker, "create_ingest_app", lambda settings: steps.append(settings) or Starlette())
    monkeypatch.setattr(os, "environ", os.environ.copy())
    os.environ.update(Settings(data_dir=tmp_path, max_parts=3).to_env())
    worker.create_app()
    assert steps == ["tuned", Settings(data_dir=tmp_path, max_parts=3)]


def test_create_app_in_process_leaves_the_allocator_alone(tmp_path: Path) -> None:
    script = ("import sys\n"
              "from pathlib import Path\n"
              "from ingest.app import create_app\n"
              "from ingest.config import Settings\n"
              f"create_app(Settings(data_dir=Path({str(tmp_path)!r})))\n"
              "tuning = sys.modules.get('ingest.server.tuning')\n"
              "print(tuning is not None and tuning._applied)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"),
                    reason="glibc's mallopt")
def test_tune_allocator_sets_the_glibc_thresholds_once_per_process() -> None:
    assert tuning.tune_allocator() is True
    assert tuning.tune_allocator() is True


def test_a_spawned_worker_cuts_off_header_bytes_after_the_header_timeout_it_was_given(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--workers", "2", "--header-timeout", "1")
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"PUT /uploads/s.bin HTTP/1.1\r\nHost: x\r\n")
            sock.settimeout(0.3)
            started = time.monotonic()
            closed_after = None
            while time.monotonic() - started < 20:
                try:
                    sock.sendall(b"X-Slow: a\r\n")
                    if sock.recv(1024) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed_after = time.monotonic() - started
                    break
        assert closed_after is not None, "the worker never closed a connection whose headers never ended"
        assert closed_after < 10, f"closed after {closed_after:.1f} s, not after the 1 s header timeout"
    finally:
        stop_server(server)
