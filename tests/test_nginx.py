"""ingest behind a real nginx started from deploy/nginx/ingest.conf, driven by curl and sockets.

Each streaming claim has a negative control: the same check with the directive that
matters switched back to nginx's default must see the body spooled, so the checks can fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from benchmarks.nginx_proxy import CONFIG_PATH, REQUEST_SPOOLED, RESPONSE_SPOOLED, Nginx, find_nginx, start_nginx
from ingest.server.run import KEEP_ALIVE_TIMEOUT
from tests.conftest import (
    IN_CI,
    LiveServer,
    sha256_of,
    start_server,
    stop_server,
    temp_files,
    wait_until,
    write_random_file,
)

MiB = 1024 * 1024
GiB = 1024 * MiB


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    path = find_nginx()
    if path is None:
        if IN_CI:
            pytest.fail("nginx is not installed; .ci/run must install it")
        pytest.skip("nginx is not installed")
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("app") / "data", "--no-fsync", "--proxy-headers",
                          "--forwarded-allow-ips", "127.0.0.1")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def proxy(app: LiveServer, nginx_binary: str) -> Iterator[Nginx]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed for the TLS listener") if IN_CI else pytest.skip("no openssl")
    server = start_nginx(app.port, tls=True, nginx=nginx_binary)
    yield server
    server.stop()


def curl(*args: str, stdin: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    curl_path = shutil.which("curl")
    if curl_path is None:
        pytest.fail("curl is not installed") if IN_CI else pytest.skip("curl is not installed")
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as source:
        return subprocess.run([curl_path, "-sS", *args], stdin=source, capture_output=True, timeout=900)


def curl_json(*args: str) -> dict[str, Any]:
    result = curl(*args)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def random_file(path: Path, size: int) -> Path:
    write_random_file(path, size)
    return path


def run_watching(proxy: Nginx, command: list[str]) -> tuple[dict[str, Any], set[str], int]:
    """Run a client to completion while polling nginx for spooled files.
    Returns the JSON answer, every spooled file seen, and the number of polls."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    spooled: set[str] = set()
    polls = 0
    while process.poll() is None:
        spooled.update(proxy.spooled_files())
        polls += 1
        time.sleep(0.05)
    out, err = process.communicate()
    assert process.returncode == 0, err
    parsed: dict[str, Any] = json.loads(out)
    return parsed, spooled, polls


def stored_path(app: LiveServer, file_id: str) -> Path:
    return app.data_dir / "files" / file_id[:2] / file_id


# --- streaming uploads -------------------------------------------------------------------------

@pytest.mark.slow
def test_a_1_gib_multipart_upload_passes_nginx_intact_and_unspooled(
        app: LiveServer, proxy: Nginx, big_file: tuple[Path, str]) -> None:
    path, digest = big_file
    created, spooled, polls = run_watching(
        proxy, ["curl", "-sS", "--fail-with-body", "-F", f"file=@{path}", proxy.url + "/uploads"])
    stored = created["files"][0]
    assert (stored["size"], stored["sha256"]) == (path.stat().st_size, digest)
    assert sha256_of(stored_path(app, stored["id"])) == digest
    assert polls > 10 and spooled == set()
    assert REQUEST_SPOOLED not in proxy.error_log()


@pytest.mark.slow
def test_a_1_gib_raw_put_passes_nginx_intact_and_unspooled(
        app: LiveServer, proxy: Nginx, big_file: tuple[Path, str]) -> None:
    path, digest = big_file
    created, spooled, polls = run_watching(
        proxy, ["curl", "-sS", "--fail-with-body", "-T", str(path), proxy.url + "/uploads/"])
    stored = created["files"][0]
    assert (stored["filename"], stored["size"], stored["sha256"]) == ("big.bin", path.stat().st_size, digest)
    assert sha256_of(stored_path(app, stored["id"])) == digest
    assert polls > 10 and spooled == set()
    assert REQUEST_SPOOLED not in proxy.error_log()


def body_blocks(total: int, digest: Any, at_half: Callable[[], None]) -> Iterator[bytes]:
    """`total` bytes in 1 MiB blocks; `at_half` runs once half of them were handed over."""
    block = os.urandom(MiB)
    for index in range(total // MiB):
        if index == total // MiB // 2:
            at_half()
        varied = index.to_bytes(4, "big") + block[4:]
        digest.update(varied)
        yield varied


def app_bytes_received(app: LiveServer) -> int:
    total = 0
    for part in temp_files(app.data_dir):
        with contextlib.suppress(FileNotFoundError):
            total += part.stat().st_size
    return total


def put_pausing_at_half(proxy: Nginx, app: LiveServer, *, chunked: bool,
                        total: int = 64 * MiB, wait: float = 30.0) -> tuple[int, int, str, int]:
    """PUT `total` bytes through nginx; at half-way, stop sending and wait (at most `wait`
    seconds) until the app has written bytes of the upload to its temp file. Returns the bytes
    the app had received during the pause, the status, the sha256 sent and the one stored."""
    seen_during_pause = []

    def pause() -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and app_bytes_received(app) == 0:
            time.sleep(0.05)
        seen_during_pause.append(app_bytes_received(app))

    digest = hashlib.sha256()
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=120)
    headers = {"content-type": "application/octet-stream"}
    if not chunked:
        headers["content-length"] = str(total)
    connection.request("PUT", "/uploads/paused.bin", body=body_blocks(total, digest, pause),
                       headers=headers, encode_chunked=chunked)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    stored_sha = answer["files"][0]["sha256"] if response.status == 201 else ""
    return seen_during_pause[0], response.status, digest.hexdigest(), stored_sha


def test_the_app_receives_the_body_while_the_client_is_still_sending(app: LiveServer, proxy: Nginx) -> None:
    received_mid_upload, status, sent, stored = put_pausing_at_half(proxy, app, chunked=False)
    assert received_mid_upload > 0
    assert (status, stored) == (201, sent)


def test_a_chunked_body_streams_through_nginx_too(app: LiveServer, proxy: Nginx) -> None:
    received_mid_upload, status, sent, stored = put_pausing_at_half(proxy, app, chunked=True)
    assert received_mid_upload > 0
    assert (status, stored) == (201, sent)
    assert REQUEST_SPOOLED not in proxy.error_log()


@pytest.mark.parametrize(("overrides", "chunked"), [
    ({"proxy_request_buffering": "on"}, False),
    # The trap: with HTTP/1.0 to the upstream nginx buffers chunked bodies even with
    # proxy_request_buffering off (https://nginx.org/r/proxy_request_buffering).
    ({"proxy_http_version": "1.0"}, True),
], ids=["request-buffering-on", "http-1.0-upstream-with-chunked-body"])
def test_negative_control_with_nginx_defaults_the_body_is_spooled_first(
        tmp_path: Path, nginx_binary: str, overrides: dict[str, str], chunked: bool) -> None:
    app = start_server(tmp_path / "data", "--no-fsync", "--proxy-headers")
    proxy = start_nginx(app.port, overrides=overrides, nginx=nginx_binary)
    try:
        received_mid_upload, status, sent, stored = put_pausing_at_half(proxy, app, chunked=chunked, wait=2.0)
        assert received_mid_upload == 0
        assert (status, stored) == (201, sent)
        assert REQUEST_SPOOLED in proxy.error_log()
    finally:
        proxy.stop()
        stop_server(app)


# --- the client-facing URL and address -----------------------------------------------------------

def test_urls_and_location_carry_the_proxys_scheme_and_host(proxy: Nginx, tmp_path: Path) -> None:
    assert proxy.tls_url is not None
    source = random_file(tmp_path / "u.bin", 1000)
    for base in (proxy.tls_url, proxy.url, f"http://localhost:{proxy.port}"):
        result = curl("-k", "-i", "-F", f"file=@{source}", base + "/uploads")
        head, _, body = result.stdout.decode().partition("\r\n\r\n")
        stored = json.loads(body)["files"][0]
        location = re.search(r"^location: (\S+)", head, re.IGNORECASE | re.MULTILINE)
        assert location is not None
        assert location.group(1) == stored["url"] == f"{base}/uploads/{stored['id']}"
        assert stored["content_url"] == f"{base}/uploads/{stored['id']}/content"
        listing = curl_json("-k", base + "/uploads?limit=1")
        assert listing["next"].startswith(base + "/uploads?")


def test_forwarded_headers_a_client_sends_to_nginx_are_overwritten(proxy: Nginx, tmp_path: Path) -> None:
    source = random_file(tmp_path / "s.bin", 10)
    stored = curl_json("-H", "X-Forwarded-Proto: https", "-H", "X-Forwarded-Host: evil.example",
                       "-H", "X-Forwarded-For: 203.0.113.9", "-F", f"file=@{source}", proxy.url + "/uploads")
    assert stored["files"][0]["url"].startswith(proxy.url + "/uploads/")


def test_the_app_sees_the_clients_address_not_nginxs(app: LiveServer, proxy: Nginx) -> None:
    # Linux routes all of 127.0.0.0/8 to lo: a client bound to 127.0.0.2 is told apart from
    # nginx, which reaches the app from 127.0.0.1.
    # ingest's access log (ingest/observe/accesslog.py) drops query strings and names the request by
    # its X-Request-Id: "<request id> <client> GET /uploads 200 …".
    marker = f"client-address-probe-{time.monotonic_ns()}"
    assert curl("--interface", "127.0.0.2", "-H", f"X-Request-Id: {marker}", "-o", os.devnull,
                proxy.url + "/uploads?limit=1").returncode == 0
    time.sleep(0.2)
    lines = [line for line in app.log().splitlines() if marker in line]
    assert len(lines) == 1 and f"{marker} 127.0.0.2 GET /uploads 200" in lines[0], lines


def test_forwarded_headers_from_an_untrusted_address_are_ignored(app: LiveServer, tmp_path: Path) -> None:
    source = random_file(tmp_path / "t.bin", 10)
    untrusted = curl_json("--interface", "127.0.0.2", "-H", "X-Forwarded-Proto: https",
                          "-F", f"file=@{source}", app.url + "/uploads")
    assert untrusted["files"][0]["url"].startswith(app.url + "/uploads/")
    # The same header from the trusted address (nginx's) is honoured: the control.
    trusted = curl_json("-H", "X-Forwarded-Proto: https", "-F", f"file=@{source}", app.url + "/uploads")
    assert trusted["files"][0]["url"].startswith(f"https://127.0.0.1:{app.port}/uploads/")


# --- limits -----------------------------------------------------------------------------------

def _read_answer(sock: socket.socket) -> bytes:
    """One HTTP response with a Content-Length, read whole (or up to the connection's end)."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def raw_exchange(port: int, head: bytes, body_prefix: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body_prefix)
        answer = _read_answer(sock)
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def _length(answer: bytes) -> int:
    match = re.search(rb"content-length: (\d+)", answer.partition(b"\r\n\r\n")[0], re.IGNORECASE)
    return int(match.group(1)) if match else 1 << 30


def test_nginx_refuses_a_declared_length_over_the_limit_in_json(app: LiveServer, proxy: Nginx) -> None:
    limit = 64 * GiB
    head = (f"PUT /uploads/huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {limit + 1}\r\n"
            f"X-Probe: too-large-{time.monotonic_ns()}\r\n\r\n").encode()
    status, headers, body = raw_exchange(proxy.port, head, os.urandom(4096))
    assert status == 413
    assert headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["error"] == "request_too_large" and "nginx" in answer["detail"]
    assert "huge.bin" not in app.log()  # refused by nginx: the app never saw it
    # At the limit itself nginx lets the request through to the app.
    head_at_limit = head.replace(str(limit + 1).encode(), str(limit).encode()).replace(b"huge", b"edge")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(head_at_limit + os.urandom(4096))
        assert wait_until(lambda: "edge.bin" in app.log() or len(temp_files(app.data_dir)) > 0)


@pytest.fixture
def small_app_proxy(tmp_path: Path, nginx_binary: str) -> Iterator[tuple[LiveServer, Nginx]]:
    """An app with small limits behind the standard nginx: the app is the layer that refuses."""
    app = start_server(tmp_path / "data", "--no-fsync", "--proxy-headers", "--max-request-size", "8MiB",
                       "--max-file-size", "4MiB")
    proxy = start_nginx(app.port, nginx=nginx_binary)
    yield app, proxy
    proxy.stop()
    stop_server(app)


@pytest.mark.parametrize(("how", "error"), [
    ("declared-length", "request_too_large"),  # Content-Length over max_request_size: refused before reading
    ("chunked", "file_too_large"),             # no length: the first limit the body crosses, mid-body
    ("multipart-file", "file_too_large"),      # one part over max_file_size in a body under max_request_size
])
def test_the_apps_413_reaches_the_client_through_nginx_as_json(
        small_app_proxy: tuple[LiveServer, Nginx], tmp_path: Path, how: str, error: str) -> None:
    app, proxy = small_app_proxy
    big = random_file(tmp_path / "big.bin", 32 * MiB)
    if how == "declared-length":
        result = curl("-w", "\n%{http_code}", "-T", str(big), proxy.url + "/uploads/x.bin")
    elif how == "chunked":
        result = curl("-w", "\n%{http_code}", "-T", "-", proxy.url + "/uploads/x.bin", stdin=big)
    else:
        medium = random_file(tmp_path / "m.bin", 6 * MiB)
        result = curl("-w", "\n%{http_code}", "-F", f"file=@{medium}", proxy.url + "/uploads")
    body, _, status = result.stdout.decode().rpartition("\n")
    assert status == "413", result
    assert json.loads(body)["error"] == error
    assert wait_until(lambda: temp_files(app.data_dir) == [])
    assert list((app.data_dir / "files").glob("*/*")) == []


# --- downloads -----------------------------------------------------------------------------------

def test_a_ranged_download_through_nginx_returns_206_with_the_right_bytes(proxy: Nginx, tmp_path: Path) -> None:
    source = random_file(tmp_path / "r.bin", 8 * MiB + 17)
    stored = curl_json("-F", f"file=@{source}", proxy.url + "/uploads")["files"][0]
    response = httpx.get(stored["content_url"], headers={"range": "bytes=5000000-5999999"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 5000000-5999999/{8 * MiB + 17}"
    assert response.content == source.read_bytes()[5_000_000:6_000_000]
    assert response.headers["etag"] == f'"{stored["sha256"]}"'
    tail = httpx.get(stored["content_url"], headers={"range": "bytes=-17"})
    assert (tail.status_code, tail.content) == (206, source.read_bytes()[-17:])


def download_with_a_pause(proxy: Nginx, url: str) -> tuple[str, bool]:
    """Read a little, stall (as a slow client does), then read the rest. Returns the sha256
    of what arrived and whether nginx had a temp file open or listed during the stall."""
    digest = hashlib.sha256()
    spooled = False
    with httpx.stream("GET", url, timeout=60) as response:
        stream = response.iter_bytes(64 * 1024)
        digest.update(next(stream))
        spooled = wait_until(lambda: bool(proxy.spooled_files()), timeout=4.0)
        for block in stream:
            digest.update(block)
    return digest.hexdigest(), spooled


@pytest.mark.parametrize("overrides", [{}, {"proxy_max_temp_file_size": "1024m"}],
                         ids=["shipped", "negative-control-nginx-default"])
def test_a_slow_download_is_never_spooled_to_nginxs_disk(
        tmp_path: Path, nginx_binary: str, overrides: dict[str, str]) -> None:
    app = start_server(tmp_path / "data", "--no-fsync", "--proxy-headers")
    proxy = start_nginx(app.port, overrides=overrides, nginx=nginx_binary)
    try:
        source = random_file(tmp_path / "d.bin", 64 * MiB)
        stored = curl_json("-T", str(source), proxy.url + "/uploads/")["files"][0]
        received, spooled = download_with_a_pause(proxy, stored["content_url"])
        assert received == sha256_of(source)
        assert spooled == bool(overrides)
        assert (RESPONSE_SPOOLED in proxy.error_log()) == bool(overrides)
    finally:
        proxy.stop()
        stop_server(app)


# --- downloads sent by nginx: X-Accel-Redirect to the shipped internal location ------------------

ACCEL_PREFIX = "/_ingest_files/"


@pytest.fixture(scope="module")
def accel(nginx_binary: str) -> Iterator[tuple[LiveServer, Nginx, Path, dict[str, Any]]]:
    """ingest answering downloads with X-Accel-Redirect, nginx serving its files directory, and
    one stored file. The data dir lies outside pytest's 0700 directories: as root, nginx's
    workers read the files as an unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="ingest-accel-"))
    root.chmod(0o755)
    app = start_server(root / "data", "--no-fsync", "--proxy-headers", "--accel-redirect-prefix", ACCEL_PREFIX)
    proxy = start_nginx(app.port, nginx=nginx_binary, files_dir=root / "data" / "files")
    try:
        source = random_file(root / "a.bin", 8 * MiB + 17)
        form = f"file=@{source};filename=page.html;type=text/html"
        stored = curl_json("-F", form, proxy.url + "/uploads")["files"][0]
        yield app, proxy, source, stored
    finally:
        proxy.stop()
        stop_server(app)
        shutil.rmtree(root, ignore_errors=True)


def test_with_x_accel_redirect_nginx_sends_the_stored_bytes_with_ingests_headers(
        accel: tuple[LiveServer, Nginx, Path, dict[str, Any]]) -> None:
    app, _, source, stored = accel
    response = httpx.get(stored["content_url"])
    assert response.status_code == 200 and response.content == source.read_bytes()
    assert response.headers["content-length"] == str(source.stat().st_size)
    assert response.headers["etag"] == f'"{stored["sha256"]}"'
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-disposition"] == 'attachment; filename="page.html"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert "x-accel-redirect" not in response.headers
    # The bytes came from nginx: ingest itself answers the same request with the location only.
    direct = httpx.get(f"{app.url}/uploads/{stored['id']}/content")
    assert direct.content == b"" and direct.headers["x-accel-redirect"].startswith(ACCEL_PREFIX)
    head = httpx.head(stored["content_url"])
    assert head.status_code == 200 and head.headers["content-length"] == str(source.stat().st_size)


def test_with_x_accel_redirect_ranges_are_206_with_the_right_bytes_and_if_range_uses_the_sha256(
        accel: tuple[LiveServer, Nginx, Path, dict[str, Any]]) -> None:
    _, _, source, stored = accel
    content = source.read_bytes()
    response = httpx.get(stored["content_url"], headers={"range": "bytes=5000000-5999999"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 5000000-5999999/{len(content)}"
    assert response.content == content[5_000_000:6_000_000]
    tail = httpx.get(stored["content_url"], headers={"range": "bytes=-17"})
    assert (tail.status_code, tail.content) == (206, content[-17:])
    current = httpx.get(stored["content_url"], headers={"range": "bytes=0-9", "if-range": f'"{stored["sha256"]}"'})
    assert (current.status_code, current.content) == (206, content[:10])
    stale = httpx.get(stored["content_url"], headers={"range": "bytes=0-9", "if-range": '"stale"'})
    assert (stale.status_code, len(stale.content)) == (200, len(content))
    refused = httpx.get(stored["content_url"], headers={"range": f"bytes={len(content) + 1}-"})
    assert refused.status_code == 416 and refused.json()["error"] == "range_not_satisfiable"


def test_with_x_accel_redirect_a_conditional_get_is_304_without_a_body(
        accel: tuple[LiveServer, Nginx, Path, dict[str, Any]]) -> None:
    _, _, _, stored = accel
    response = httpx.get(stored["content_url"], headers={"if-none-match": f'"{stored["sha256"]}"'})
    assert response.status_code == 304 and response.content == b""
    assert response.headers["etag"] == f'"{stored["sha256"]}"'
    other = httpx.get(stored["content_url"], headers={"if-none-match": '"other"'})
    assert other.status_code == 200


def test_the_internal_download_location_cannot_be_fetched_directly(
        accel: tuple[LiveServer, Nginx, Path, dict[str, Any]]) -> None:
    app, proxy, source, stored = accel
    location = httpx.get(f"{app.url}/uploads/{stored['id']}/content").headers["x-accel-redirect"]
    assert (app.data_dir / "files" / location.removeprefix(ACCEL_PREFIX)).read_bytes() == source.read_bytes()
    for path in (location, ACCEL_PREFIX, ACCEL_PREFIX + "../catalog.sqlite3"):
        assert httpx.get(proxy.url + path).status_code == 404, path


# --- keep-alive and workers ---------------------------------------------------------------------

def _directive(name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", CONFIG_PATH.read_text(), re.MULTILINE)


def test_nginx_drops_idle_upstream_connections_before_uvicorn_does() -> None:
    (upstream_timeout,) = _directive("keepalive_timeout")
    assert upstream_timeout.endswith("s")
    assert int(upstream_timeout.removesuffix("s")) < KEEP_ALIVE_TIMEOUT


def test_the_app_keeps_an_idle_connection_past_uvicorns_default_5_seconds(app: LiveServer) -> None:
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as sock:
        sock.sendall(request)
        assert _read_answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6.5)  # past uvicorn's default timeout_keep_alive of 5 s
        sock.sendall(request)
        assert _read_answer(sock).startswith(b"HTTP/1.1 200")


def test_two_workers_behind_nginx_share_the_data_dir_and_catalog(
        tmp_path: Path, nginx_binary: str) -> None:
    app = start_server(tmp_path / "data", "--no-fsync", "--proxy-headers", "--workers", "2")
    proxy = start_nginx(app.port, nginx=nginx_binary)
    try:
        sources = [random_file(tmp_path / f"w{n}.bin", 4 * MiB + n) for n in range(12)]
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(
                lambda p: curl_json("--fail-with-body", "-F", f"file=@{p}", proxy.url + "/uploads"), sources))
        stored = [answer["files"][0] for answer in answers]
        assert [s["sha256"] for s in stored] == [sha256_of(p) for p in sources]
        # Every worker sees every row: ask over fresh connections, spread across both.
        for _ in range(4):
            listing = httpx.get(proxy.url + "/uploads?limit=100", headers={"connection": "close"}).json()
            assert {item["id"] for item in listing["items"]} == {s["id"] for s in stored}
        for entry, source in zip(stored, sources, strict=True):
            assert httpx.get(entry["content_url"]).content == source.read_bytes()
        workers = [line for line in app.log().splitlines() if "Started server process" in line]
        assert len(workers) == 2, app.log()
        # Both workers stored files: each wrote at least one 4 MiB upload (/proc/PID/io wchar).
        written = {pid: _bytes_written(pid) for pid in _worker_pids(app)}
        assert len(written) == 2 and all(n >= 4 * MiB for n in written.values()), written
        assert "database is locked" not in app.log()
    finally:
        proxy.stop()
        stop_server(app)


def _worker_pids(app: LiveServer) -> list[int]:
    pids = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat_path.read_text().rpartition(")")[2].split()[1])
            command = (stat_path.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if parent == app.process.pid and b"resource_tracker" not in command:
            pids.append(int(stat_path.parent.name))
    return pids


def _bytes_written(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/PID/io")


def test_the_shipped_config_is_used_unchanged(proxy: Nginx) -> None:
    generated = (proxy.prefix / "nginx.conf").read_text()
    assert f"include {CONFIG_PATH};" in generated
    assert urlsplit(proxy.url).hostname == "127.0.0.1"
