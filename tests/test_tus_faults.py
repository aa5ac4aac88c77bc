"""tus under faults, against a real uvicorn process: clients vanishing mid-PATCH at random
points (FIN or RST, with and without Upload-Checksum), and SIGTERM mid-PATCH with a short
shutdown grace. After each fault the upload holds a prefix of what was sent, exactly as HEAD
reports it, nothing partial is listed, and the upload resumes to the right file.

(tests/test_tus_live.py covers one drop through a proxy with tuspy, a stalled connection
taken over, and SIGKILL between PATCHes; this file covers what those do not.)
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import socket
import time
from pathlib import Path

import httpx

from tests.conftest import LiveServer, start_server, stop_server, wait_until

MiB = 1024 * 1024
TUS = {"tus-resumable": "1.0.0"}
OCTETS = {**TUS, "content-type": "application/offset+octet-stream"}


def create(server: LiveServer, length: int) -> str:
    created = httpx.post(server.url + "/files/", headers={**TUS, "upload-length": str(length)})
    assert created.status_code == 201, created.text
    return str(created.headers["location"])


def offset_of(url: str) -> int:
    head = httpx.head(url, headers=TUS, timeout=30)
    assert head.status_code == 200 and "ingest-file-id" not in head.headers, head.headers
    return int(head.headers["upload-offset"])


def held_bytes(server: LiveServer, url: str) -> bytes:
    return (server.data_dir / "tus" / (url.rsplit("/", 1)[1] + ".bin")).read_bytes()


def listed(server: LiveServer) -> list[dict[str, object]]:
    items: list[dict[str, object]] = httpx.get(server.url + "/uploads", timeout=30).json()["items"]
    return items


def patch_head(server: LiveServer, url: str, offset: int, length: int, checksum: str | None = None) -> bytes:
    path = url.removeprefix(server.url)
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {length}\r\n")
    if checksum:
        head += f"Upload-Checksum: {checksum}\r\n"
    return (head + "\r\n").encode()


def cut_patch(server: LiveServer, url: str, body: bytes, offset: int, cut: int, *, reset: bool,
              checksum: bool) -> None:
    """A PATCH of the rest of `body` that stops after `cut` bytes: the client closes (FIN) or
    resets (RST, SO_LINGER 0) its socket."""
    rest = body[offset:]
    digest = f"sha1 {base64.b64encode(hashlib.sha1(rest).digest()).decode()}" if checksum else None
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(patch_head(server, url, offset, len(rest), digest) + rest[:cut])
        time.sleep(0.05)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_clients_vanishing_mid_patch_leave_a_prefix_as_head_says_and_the_upload_resumes(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--block-size", "64KiB")
    rng = random.Random(7)
    body = os.urandom(6 * MiB)
    try:
        url = create(server, len(body))
        offset, cuts, advanced = 0, 0, 0
        for index in range(12):
            reset, checksum = index % 2 == 1, index % 3 == 2
            cut = rng.randrange(0, min(len(body) - offset, MiB))
            cut_patch(server, url, body, offset, cut, reset=reset, checksum=checksum)
            cuts += 1
            # HEAD takes the upload over from a PATCH whose dead socket is not noticed yet.
            now = offset_of(url)
            if checksum:
                assert now == offset, "a chunk with a checksum that was cut short was kept"
            else:
                assert offset <= now <= offset + cut, (offset, now, cut)
            assert held_bytes(server, url) == body[:now]  # exactly the bytes sent, nothing else
            assert listed(server) == []
            advanced += now > offset
            offset = now
        assert advanced, "no cut PATCH kept any of its bytes"
        done = httpx.patch(url, content=body[offset:], headers={**OCTETS, "upload-offset": str(offset)}, timeout=60)
        assert done.status_code == 204, done.text
        [item] = listed(server)
        assert (item["size"], item["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
        assert "Traceback" not in server.log()
    finally:
        stop_server(server)
    print(f"tus: {cuts} PATCHes cut ({advanced} kept some of their bytes), resumed from {offset} to the right sha256")


def test_sigterm_mid_patch_lets_one_finish_within_the_grace_and_leaves_the_other_resumable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, "--no-fsync", "--block-size", "64KiB", "--shutdown-grace", "3")
    finishing_body, stalled_body = os.urandom(2 * MiB), os.urandom(8 * MiB)
    finishing_url, stalled_url = create(server, len(finishing_body)), create(server, len(stalled_body))
    finishing = socket.create_connection(("127.0.0.1", server.port))
    stalled = socket.create_connection(("127.0.0.1", server.port))
    try:
        finishing.sendall(patch_head(server, finishing_url, 0, len(finishing_body)) + finishing_body[:MiB])
        stalled.sendall(patch_head(server, stalled_url, 0, len(stalled_body)) + stalled_body[:3 * MiB])
        stalled_bin = data_dir / "tus" / (stalled_url.rsplit("/", 1)[1] + ".bin")
        assert wait_until(lambda: stalled_bin.stat().st_size >= 2 * MiB), stalled_bin.stat().st_size
        seen = stalled_bin.stat().st_size
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        finishing.sendall(finishing_body[MiB:])
        finishing.settimeout(20)
        assert finishing.recv(65536).startswith(b"HTTP/1.1 204"), "a PATCH ending within the grace failed"
        # The stalled PATCH sends nothing more: the grace ends, it is cancelled, its bytes saved.
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        finishing.close()
        stalled.close()
        stop_server(server)
    # uvicorn logs the cancellation of each request still running when the grace ends, with
    # its traceback; no other traceback may appear.
    log = server.log()
    assert log.count("Traceback") == log.count("CancelledError: Task cancelled, timeout graceful shutdown"), log
    restarted = start_server(data_dir, "--no-fsync", "--block-size", "64KiB", log_path=tmp_path / "second.log")
    try:
        stalled_url = restarted.url + stalled_url.removeprefix(server.url)
        offset = offset_of(stalled_url)
        assert seen <= offset <= 3 * MiB
        assert held_bytes(restarted, stalled_url) == stalled_body[:offset]
        [item] = listed(restarted)  # the finished upload only
        assert item["sha256"] == hashlib.sha256(finishing_body).hexdigest()
        done = httpx.patch(stalled_url, content=stalled_body[offset:],
                           headers={**OCTETS, "upload-offset": str(offset)}, timeout=60)
        assert done.status_code == 204, done.text
        assert {item["sha256"] for item in listed(restarted)} == {
            hashlib.sha256(finishing_body).hexdigest(), hashlib.sha256(stalled_body).hexdigest()}
    finally:
        stop_server(restarted)
    print(f"tus: SIGTERM with 2 PATCHes in flight: one finished in the grace, one resumed from {offset} bytes")
