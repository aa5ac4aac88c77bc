"""A real uvicorn process on a loopback port, driven by real clients (curl, raw sockets)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    LiveServer,
    require_tool,
    sha256_of,
    start_server,
    stop_server,
    stored_files,
    temp_files,
    wait_until,
)

MiB = 1024 * 1024


def curl(*args: str, stdin: Path | None = None) -> dict[str, Any]:
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as source:
        result = subprocess.run([require_tool("curl"), "-sS", "--fail-with-body", *args],
                                stdin=source, capture_output=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def stored_path(server: LiveServer, file_id: str) -> Path:
    return server.data_dir / "files" / file_id[:2] / file_id


@pytest.mark.slow
def test_curl_multipart_of_1_gib_is_stored_intact_with_flat_memory(
        live_server: LiveServer, big_file: tuple[Path, str]) -> None:
    path, digest = big_file
    created = curl("-F", f"file=@{path}", live_server.url + "/uploads")
    stored = created["files"][0]
    assert (stored["size"], stored["sha256"]) == (path.stat().st_size, digest)
    assert sha256_of(stored_path(live_server, stored["id"])) == digest
    peak = live_server.peak_rss_bytes()
    print(f"server peak RSS after a 1 GiB multipart upload: {peak / MiB:.1f} MiB")
    assert peak < 150 * MiB, f"peak RSS {peak / MiB:.0f} MiB is not flat"


def test_curl_sends_several_files_and_fields_in_one_request(live_server: LiveServer, tmp_path: Path) -> None:
    sources = []
    for n, size in enumerate([0, 1, 5 * MiB + 3]):
        path = tmp_path / f"f{n}.dat"
        path.write_bytes(os.urandom(size))
        sources.append(path)
    created = curl("-F", f"a=@{sources[0]}", "-F", f"b=@{sources[1]};type=image/png",
                   "-F", f"c=@{sources[2]};filename=renamed.bin", "-F", "note=hello world",
                   "-F", 'metadata={"batch": 7}', "-F", f"c.sha256={sha256_of(sources[2])}",
                   live_server.url + "/uploads")
    files = created["files"]
    assert [f["filename"] for f in files] == ["f0.dat", "f1.dat", "renamed.bin"]
    assert files[1]["content_type"] == "image/png"
    assert [f["sha256"] for f in files] == [sha256_of(p) for p in sources]
    assert all(f["metadata"] == {"batch": 7} for f in files)
    assert created["fields"]["note"] == "hello world"
    for stored, source in zip(files, sources, strict=True):
        assert stored_path(live_server, stored["id"]).read_bytes() == source.read_bytes()


def test_curl_raw_put_with_content_digest(live_server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "image.iso"
    path.write_bytes(os.urandom(20 * MiB))
    digest = base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()
    created = curl("-T", str(path), "-H", f"Content-Digest: sha-256=:{digest}:", live_server.url + "/uploads/")
    assert created["files"][0]["filename"] == "image.iso"
    assert created["files"][0]["sha256"] == sha256_of(path)
    wrong = subprocess.run([require_tool("curl"), "-sS", "-T", str(path), "-H",
                            "Content-Digest: sha-256=:" + base64.b64encode(b"\0" * 32).decode() + ":",
                            "-w", "%{http_code}", "-o", "/dev/null", live_server.url + "/uploads/"],
                           capture_output=True, text=True, timeout=120)
    assert wrong.stdout == "422"
    assert len(stored_files(live_server.data_dir)) == 1


def test_curl_chunked_upload_without_a_length(live_server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "stream.bin"
    path.write_bytes(os.urandom(3 * MiB))
    # With -T - curl reads stdin and, not knowing the length, sends the body chunked.
    created = curl("-T", "-", live_server.url + "/uploads/stream.bin", stdin=path)
    assert created["files"][0]["sha256"] == sha256_of(path)


def test_curl_downloads_a_range(live_server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "r.bin"
    path.write_bytes(os.urandom(MiB))
    stored = curl("-F", f"file=@{path}", live_server.url + "/uploads")["files"][0]
    part = subprocess.run([require_tool("curl"), "-sS", "-r", "1000-1999", stored["content_url"]],
                          capture_output=True, timeout=60).stdout
    assert part == path.read_bytes()[1000:2000]


def send_and_drop(server: LiveServer, head: bytes, body_prefix: bytes) -> None:
    """A client that sends the headers and part of the body, then vanishes."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + body_prefix)
        time.sleep(0.3)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_client_dropping_mid_multipart_leaves_no_file_and_no_temp(live_server: LiveServer) -> None:
    first = (b"--XyZ\r\nContent-Disposition: form-data; name=\"done\"; filename=\"complete.bin\"\r\n\r\n"
             + os.urandom(3 * MiB) + b"\r\n--XyZ\r\n"
             b"Content-Disposition: form-data; name=\"cut\"; filename=\"cut.bin\"\r\n\r\n" + os.urandom(8 * MiB))
    head = (f"POST /uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
            f"Content-Length: {100 * MiB}\r\n\r\n").encode()
    send_and_drop(live_server, head, first)
    assert wait_until(lambda: temp_files(live_server.data_dir) == [])
    assert stored_files(live_server.data_dir) == []
    assert httpx.get(live_server.url + "/uploads").json()["items"] == []
    assert httpx.get(live_server.url + "/healthz").status_code == 200


def test_client_dropping_mid_raw_put_leaves_nothing(live_server: LiveServer) -> None:
    head = f"PUT /uploads/x.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {50 * MiB}\r\n\r\n".encode()
    send_and_drop(live_server, head, os.urandom(5 * MiB))
    assert wait_until(lambda: temp_files(live_server.data_dir) == [])
    assert stored_files(live_server.data_dir) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..\\..\\win.ini", "a\u202e.txt",
                                  "x" * 250 + ".txt", "%2e%2e%2fescape", "\u0130\u0307.txt"])
def test_malicious_names_never_escape_the_data_dir(live_server: LiveServer, tmp_path: Path, name: str) -> None:
    path = tmp_path / "payload.bin"
    path.write_bytes(b"evil")
    before = {p for p in tmp_path.rglob("*")}
    result = subprocess.run([require_tool("curl"), "-sS", "-F", f"file=@{path};filename=\"{name}\"",
                             live_server.url + "/uploads"], capture_output=True, text=True, timeout=60)
    body = json.loads(result.stdout)
    if "files" in body:
        stored = body["files"][0]
        assert "/" not in stored["filename"] and "\\" not in stored["filename"]
        assert stored_path(live_server, stored["id"]).read_bytes() == b"evil"
    else:
        assert body["error"] == "invalid_filename"
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(p.is_relative_to(live_server.data_dir) or p.name.startswith("server-") for p in created)
    assert not Path("/etc/passwd.bin").exists()
    assert all(len(p.name) == 32 for p in stored_files(live_server.data_dir))


def test_put_without_length_or_chunking_is_a_411(live_server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(b"PUT /uploads/x.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411")
    assert json.loads(body)["error"] == "length_required"


def test_a_refused_upload_answer_survives_the_client_still_sending(tmp_path: Path) -> None:
    """The 413 comes before the body is read; the client keeps sending, as curl and nginx do.
    A plain close with unread bytes would send a RST that can destroy the answer in flight."""
    server = start_server(tmp_path / "data", "--no-fsync", "--max-request-size", "1MiB")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"PUT /uploads/x.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 67108864\r\n\r\n")
            time.sleep(0.5)  # the answer and the server's close are on their way
            for _ in range(32):  # 4 MiB more, which the server must read and drop
                sock.sendall(os.urandom(128 * 1024))
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    finally:
        stop_server(server)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "request_too_large"
