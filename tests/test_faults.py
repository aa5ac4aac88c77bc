"""Faults against a real uvicorn process: disconnects, a full disk, kill -9, slow and
hostile clients, the upload limit and SIGTERM. After each: nothing partial is visible,
temporary space is reclaimed and the server keeps serving.

Timing assertions are deliberately loose (seconds, not milliseconds): the machine is
shared, and the point is that nothing waits forever, not how fast it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI, LiveServer, start_server, stop_server, stored_files, temp_files, wait_until

MiB = 1024 * 1024
BOUNDARY = b"f4ultB0undary"


def multipart(content: bytes, filename: str = "f.bin") -> bytes:
    return (b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename.encode()
            + b"\"\r\n\r\n" + content + b"\r\n--" + BOUNDARY + b"--\r\n")


def request_head(server: LiveServer, method: str, path: str, length: int, content_type: bytes) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: {length}\r\n".encode()
            + b"Content-Type: " + content_type + b"\r\n\r\n")


def send_and_abort(server: LiveServer, head: bytes, body: bytes, cut: int) -> None:
    """Send the head and `cut` body bytes, then reset the connection (SO_LINGER 0)."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + body[:cut])
        time.sleep(0.02)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def catalog_ids(server: LiveServer) -> list[str]:
    items = httpx.get(server.url + "/uploads?limit=1000", timeout=30).json()["items"]
    return [item["id"] for item in items]


def put(server: LiveServer, content: bytes, name: str = "x.bin", timeout: float = 60) -> httpx.Response:
    return httpx.put(f"{server.url}/uploads/{name}", content=content, timeout=timeout)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    running = start_server(tmp_path / "data", "--no-fsync", "--block-size", "64KiB")
    yield running
    stop_server(running)


def test_clients_vanishing_at_random_points_leave_no_partial_file(server: LiveServer) -> None:
    rng = random.Random(6)
    content = os.urandom(3 * MiB)
    multipart_body = multipart(content)
    raw_head = request_head(server, "PUT", "/uploads/raw.bin", len(content), b"application/octet-stream")
    form_head = request_head(server, "POST", "/uploads", len(multipart_body),
                             b"multipart/form-data; boundary=" + BOUNDARY)
    cuts = 0
    for _ in range(15):
        send_and_abort(server, raw_head, content, rng.randrange(0, len(content)))
        send_and_abort(server, form_head, multipart_body, rng.randrange(0, len(multipart_body)))
        cuts += 2
    assert wait_until(lambda: temp_files(server.data_dir) == []), temp_files(server.data_dir)
    assert stored_files(server.data_dir) == [] and catalog_ids(server) == []
    answer = put(server, content)
    assert answer.status_code == 201 and answer.json()["files"][0]["sha256"] == hashlib.sha256(content).hexdigest()
    print(f"{cuts} disconnects injected, nothing kept")


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP response with a Content-Length: (head, body). The connection stays open."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {received[:200]!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_bodies_longer_or_shorter_than_their_content_length_store_nothing_wrong(server: LiveServer) -> None:
    content = os.urandom(256 * 1024)
    body = multipart(content)
    form = b"multipart/form-data; boundary=" + BOUNDARY
    # Longer: the server reads exactly Content-Length bytes, so the form lacks its closing
    # boundary; the surplus is parsed as a next request, which is not HTTP. Whichever 400
    # comes first (ingest's JSON, or uvicorn's plain "Invalid HTTP request" that closes the
    # connection), nothing is stored.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request_head(server, "POST", "/uploads", len(body) - 100, form) + body)
        head, _ = read_response(sock)
    assert head.startswith(b"HTTP/1.1 400"), head
    # Shorter: the body never completes; the client gives up and closes.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request_head(server, "POST", "/uploads", len(body) + 100, form) + body)
        time.sleep(0.2)
    # A raw body longer than declared: the declared bytes are the file, the surplus the start
    # of a next request (here one that could still become valid HTTP; garbage would make
    # uvicorn answer 400 and close at once, dropping the first answer).
    raw_head = request_head(server, "PUT", "/uploads/raw.bin", len(content) - 1, b"application/octet-stream")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(raw_head + content[:-1] + b"GE")
        head, answer = read_response(sock)
    assert head.startswith(b"HTTP/1.1 201"), head
    stored = json.loads(answer)["files"][0]
    assert (stored["size"], stored["sha256"]) == (len(content) - 1, hashlib.sha256(content[:-1]).hexdigest())
    assert wait_until(lambda: temp_files(server.data_dir) == [])
    assert catalog_ids(server) == [stored["id"]]


def test_a_full_disk_answers_507_removes_the_partial_and_keeps_serving(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("this test mounts a small tmpfs and needs root, as CI has")
        pytest.skip("mounting a small tmpfs for a full disk needs root")
    data_dir = tmp_path / "small"
    data_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(data_dir)], check=True)
    try:
        small = start_server(data_dir, "--no-fsync", "--block-size", "64KiB", log_path=tmp_path / "small.log")
        try:
            first = put(small, os.urandom(2 * MiB), "first.bin")
            assert first.status_code == 201
            too_big = put(small, os.urandom(16 * MiB), "big.bin")
            assert (too_big.status_code, too_big.json()["error"]) == (507, "insufficient_storage")
            assert wait_until(lambda: temp_files(data_dir) == [])
            assert catalog_ids(small) == [first.json()["files"][0]["id"]]
            assert httpx.get(small.url + "/healthz").status_code == 200
            # Space frees: the first file is deleted; a file that did not fit before fits now.
            assert httpx.delete(f"{small.url}/uploads/{first.json()['files'][0]['id']}").status_code == 204
            later = os.urandom(7 * MiB)
            answer = put(small, later, "later.bin")
            assert answer.status_code == 201, answer.text
            assert answer.json()["files"][0]["sha256"] == hashlib.sha256(later).hexdigest()
        finally:
            stop_server(small)
    finally:
        subprocess.run(["umount", "-l", str(data_dir)], check=False)


def test_kill_9_mid_upload_then_restart_keeps_every_cataloged_file_whole_and_sweeps_temp(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir, "--block-size", "64KiB")
    kept = {}
    for index in range(5):
        content = os.urandom(random.randrange(1, 2 * MiB))
        answer = put(first, content, f"kept{index}.bin")
        assert answer.status_code == 201
        kept[answer.json()["files"][0]["id"]] = hashlib.sha256(content).hexdigest()
    # Several uploads in flight when the process dies.
    sockets = []
    for _ in range(4):
        sock = socket.create_connection(("127.0.0.1", first.port))
        sock.sendall(request_head(first, "PUT", "/uploads/cut.bin", 8 * MiB, b"application/octet-stream")
                     + os.urandom(3 * MiB))
        sockets.append(sock)
    assert wait_until(lambda: len(temp_files(data_dir)) == 4), temp_files(data_dir)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    for sock in sockets:
        sock.close()
    assert len(temp_files(data_dir)) == 4  # the dead process could not clean up
    second = start_server(data_dir, "--block-size", "64KiB", log_path=tmp_path / "second.log")
    try:
        assert temp_files(data_dir) == [], "start-up did not sweep the dead process's temp files"
        assert sorted(catalog_ids(second)) == sorted(kept)
        for file_id, digest in kept.items():
            body = httpx.get(f"{second.url}/uploads/{file_id}/content", timeout=30).content
            assert hashlib.sha256(body).hexdigest() == digest
        assert len(stored_files(data_dir)) == len(kept)
    finally:
        stop_server(second)


def test_an_upload_that_stops_sending_gets_408_and_others_are_not_held_up(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--body-idle-timeout", "2")
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request_head(server, "PUT", "/uploads/slow.bin", 10 * MiB, b"application/octet-stream")
                         + b"x" * 1000)
            # While it stalls, another upload goes through.
            assert put(server, b"quick", "quick.bin", timeout=10).status_code == 201
            sock.settimeout(30)
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"request_timeout"' in answer
        assert wait_until(lambda: temp_files(server.data_dir) == [])
    finally:
        stop_server(server)


def test_a_body_trickled_below_the_minimum_rate_gets_408_and_others_are_not_held_up(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--body-idle-timeout", "2", "--body-min-rate", "1000")
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request_head(server, "PUT", "/uploads/trickle.bin", MiB, b"application/octet-stream"))
            sock.settimeout(0.5)
            started, answer = time.monotonic(), b""
            while not answer and time.monotonic() - started < 30:
                sock.sendall(b"x" * 50)  # 100 bytes/s: never idle for 2 s, far below 1000 bytes/s
                with contextlib.suppress(TimeoutError):
                    answer = sock.recv(65536)
                if time.monotonic() - started < 1.5:
                    assert put(server, b"quick", "quick.bin", timeout=10).status_code == 201
            elapsed = time.monotonic() - started
            sock.settimeout(10)
            answer += read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"slower than 1000 bytes/s" in answer
        assert 2 <= elapsed < 10
        assert wait_until(lambda: temp_files(server.data_dir) == [])
    finally:
        stop_server(server)


def test_a_trickle_of_header_bytes_is_cut_off_by_the_header_timeout(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--header-timeout", "2")
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"PUT /uploads/s.bin HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 30:
                try:
                    sock.sendall(b"X-Slow: a\r\n")
                except OSError:
                    closed = True
                    break
                sock.settimeout(0.5)
                try:
                    if sock.recv(1024) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
                except OSError:
                    closed = True
                    break
                assert put(server, b"ok", "ok.bin", timeout=10).status_code == 201
        assert closed, "the server never closed a connection whose headers never ended"
    finally:
        stop_server(server)


def test_uploads_beyond_the_limit_get_503_with_retry_after(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--max-concurrent-uploads", "2")
    try:
        stalled = []
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(request_head(server, "PUT", "/uploads/held.bin", MiB, b"application/octet-stream") + b"x")
            stalled.append(sock)
        assert wait_until(lambda: len(temp_files(server.data_dir)) == 2)
        refused = put(server, b"third", "third.bin", timeout=10)
        assert (refused.status_code, refused.json()["error"]) == (503, "too_many_uploads")
        assert refused.headers["retry-after"].isdigit()
        assert httpx.get(server.url + "/uploads").status_code == 200  # reads are not limited
        for sock in stalled:
            sock.close()
        assert wait_until(lambda: put(server, b"later", "later.bin", timeout=10).status_code == 201)
        assert wait_until(lambda: temp_files(server.data_dir) == [])
    finally:
        stop_server(server)


def test_sigterm_lets_uploads_finish_within_the_grace_and_cleans_the_rest(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--shutdown-grace", "3")
    content = os.urandom(MiB)
    finishing = socket.create_connection(("127.0.0.1", server.port))
    finishing.sendall(request_head(server, "PUT", "/uploads/fin.bin", len(content), b"application/octet-stream")
                      + content[:1000])
    abandoned = socket.create_connection(("127.0.0.1", server.port))
    abandoned.sendall(request_head(server, "PUT", "/uploads/ab.bin", 10 * MiB, b"application/octet-stream") + b"x")
    assert wait_until(lambda: len(temp_files(server.data_dir)) == 2)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    finishing.sendall(content[1000:])
    finishing.settimeout(20)
    answer = finishing.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    # uvicorn re-raises the SIGTERM it handled once shut down, so the exit status says so.
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    abandoned.close()
    finishing.close()
    assert temp_files(server.data_dir) == [], "the upload cut off at the end of the grace left its temp file"
    assert len(stored_files(server.data_dir)) == 1


def test_a_hostile_crlf_dense_body_is_refused_and_does_not_starve_a_normal_upload(server: LiveServer) -> None:
    hostile = multipart(b"\r\n" * (96 * MiB // 2))
    outcome: dict[str, bytes] = {}

    def send_hostile() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            sock.sendall(request_head(server, "POST", "/uploads", len(hostile),
                                      b"multipart/form-data; boundary=" + BOUNDARY))
            # The server may answer and close before the whole body went out.
            with contextlib.suppress(OSError):
                sock.sendall(hostile)
            outcome["answer"] = read_until_closed(sock)

    sender = threading.Thread(target=send_hostile)
    sender.start()
    latencies = []
    normal = os.urandom(256 * 1024)
    while sender.is_alive():
        started = time.monotonic()
        answer = httpx.post(server.url + "/uploads", files={"file": ("n.bin", normal)}, timeout=30)
        latencies.append(time.monotonic() - started)
        assert answer.status_code == 201
    sender.join()
    assert outcome["answer"].startswith(b"HTTP/1.1 400"), outcome["answer"][:300]
    assert b"parse_budget_exceeded" in outcome["answer"]
    assert wait_until(lambda: temp_files(server.data_dir) == [])
    print(f"normal uploads beside a hostile one: {len(latencies)}, slowest {max(latencies, default=0):.2f} s")
    assert max(latencies, default=0) < 10.0


def test_tokens_never_appear_in_the_server_log(tmp_path: Path) -> None:
    token = "tok-" + os.urandom(12).hex()
    server = start_server(tmp_path / "data", "--no-fsync", env={"INGEST_TOKENS": token})
    try:
        assert httpx.get(server.url + "/uploads").status_code == 401
        assert httpx.get(server.url + "/uploads", headers={"authorization": f"Bearer {token}x"}).status_code == 401
        good = {"authorization": f"Bearer {token}"}
        assert httpx.put(server.url + "/uploads/a.bin", content=b"abc", headers=good).status_code == 201
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        stop_server(server)
    assert token not in server.log()
