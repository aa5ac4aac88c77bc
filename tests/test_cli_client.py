"""The client commands without a server: Ctrl-C, listings, help; a mock transport or a
listener that never answers stands in for ingest."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ingest import cli
from ingest.client import Client

MiB = 1024 * 1024


@dataclass
class SilentServer:
    url: str
    spoken_to: threading.Event  # set once a request's first bytes arrived


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A TCP listener that reads whatever comes and never answers: every upload hangs."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    spoken_to = threading.Event()

    def drain(connection: socket.socket) -> None:
        with connection:
            connection.settimeout(0.2)
            while not stop.is_set():
                try:
                    if not connection.recv(1 << 16):
                        return
                    spoken_to.set()
                except TimeoutError:
                    continue
                except OSError:
                    return

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drain, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield SilentServer(f"http://127.0.0.1:{listener.getsockname()[1]}", spoken_to)
    stop.set()
    thread.join()
    listener.close()


@pytest.mark.parametrize(("command", "message"), [
    (("upload",), "ingest: interrupted; nothing was stored"),
    (("upload", "--resumable"), "ingest: interrupted; run the same command again to resume"),
    (("download", "0" * 32, "-o"), "ingest: interrupted; run the same command again to resume"),
])
def test_ctrl_c_during_a_transfer_prints_one_line_and_exits_130(
        silent_server: SilentServer, tmp_path: Path, command: tuple[str, ...], message: str) -> None:
    path = tmp_path / "big.bin"
    if command[0] == "upload":
        path.write_bytes(b"\0" * (4 * MiB))
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest", *command, str(path), "--quiet", "--url", silent_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    # Started, connected, sending (or waiting on a server that never answers).
    assert silent_server.spoken_to.wait(timeout=60)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()  # reaped and its pipes closed, whatever happened
        raise AssertionError(f"still running 60 s after Ctrl-C:\n{stderr[-3000:]}") from None
    assert (process.returncode, stdout, stderr.splitlines()) == (130, "", [message])


def mock_client(pages: list[list[dict[str, object]]]) -> Client:
    def server(request: httpx.Request) -> httpx.Response:
        index = int(request.url.params.get("cursor", "0"))
        more = index + 1 < len(pages)
        return httpx.Response(200, json={"items": pages[index], "next": None,
                                         "next_cursor": str(index + 1) if more else None})

    return Client("http://ingest.test", transport=httpx.MockTransport(server))


def item(n: int, size: int) -> dict[str, object]:
    return {"id": f"{n:032x}", "filename": f"file {n}.bin", "size": size, "sha256": "0" * 64,
            "content_type": "application/octet-stream", "created_at": "2026-01-01T00:00:00Z", "metadata": {}}


def test_ls_prints_every_page_with_human_sizes(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pages = [[item(0, 3 * MiB), item(1, 512)], [item(2, 5 * 1024**3)]]
    monkeypatch.setattr(cli, "_client", lambda args: mock_client(pages))
    assert cli.main(["ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [f"{n:032x}" for n in range(3)]
    assert ["3.0 MiB" in lines[0], "512 B" in lines[1], "5.0 GiB" in lines[2]] == [True] * 3
    assert lines[0].endswith("file 0.bin")


def test_ls_json_prints_one_array_and_limit_stops_early(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    pages = [[item(0, 1), item(1, 2)], [item(2, 3)]]
    monkeypatch.setattr(cli, "_client", lambda args: mock_client(pages))
    assert cli.main(["ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(entry["id"], entry["size"]) for entry in listed] == [(f"{n:032x}", n + 1) for n in range(3)]
    assert cli.main(["ls", "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_help_shows_sizes_in_binary_units_and_the_ls_limit() -> None:
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    serve_help = " ".join(commands["serve"].format_help().split())
    assert "default 64GiB" in serve_help and "default 64KiB" in serve_help
    assert "68719476736" not in serve_help
    assert "Sizes take binary units" in serve_help and "1 KiB = 1024 bytes" in serve_help
    assert "--limit N" in commands["ls"].format_help() and "--json" in commands["ls"].format_help()
    assert "-o PATH" in commands["download"].format_help()
