"""Upload links and content rules against a real server: a link made with `ingest link create`
used by curl, tuspy and the upload page in Chromium; and `--accept` refusing a multi-GB body at
its first block, measured by the bytes the server read before it answered."""

from __future__ import annotations

import gc
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import LiveServer, require_tool, start_server, stop_server
from tests.test_browser_uploads import CHROMIUM_ARGS, PAGE_LOAD_TIMEOUT, SMALL_UPLOAD_TIMEOUT
from tests.test_tus_live import TUSPY_LEAKS_FILES, tusclient

MiB = 1024 * 1024
GiB = 1024 * MiB
ADMIN = "admin:root:admin,reader:rd:read"
READER = {"authorization": "Bearer rd"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    running = start_server(tmp_path / "data", "--no-fsync", "--tokens", ADMIN)
    yield running
    stop_server(running)


def cli(server: LiveServer, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ingest", "link", *args, "--url", server.url, "--token", "root"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@TUSPY_LEAKS_FILES
def test_a_link_from_the_cli_works_with_curl_tuspy_and_the_page_and_nothing_else(
        server: LiveServer, tmp_path: Path) -> None:
    curl = require_tool("curl")
    chromium = require_tool("chromium")
    url = cli(server, "create", "--max-files", "3", "--label", "Send me the video", "--expires", "1h").strip()
    secret = url.rsplit("/", 1)[1]
    [listed] = json.loads(cli(server, "ls", "--json"))
    link_id = listed["id"]
    assert secret not in json.dumps(listed) and (listed["label"], listed["state"]) == ("Send me the video", "active")

    first = tmp_path / "one.txt"
    first.write_bytes(b"sent with curl\n" * 100)
    answer = subprocess.run([curl, "-sS", "-T", str(first), f"{server.url}/uploads/one.txt?link={secret}"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(answer.stdout)["files"][0]["link"] == link_id
    refused = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                              f"Authorization: Bearer {secret}", f"{server.url}/uploads"],
                             capture_output=True, text=True, timeout=60, check=True)
    assert refused.stdout == "403"  # a link lists nothing

    second = tmp_path / "two.bin"
    second.write_bytes(bytes(range(256)) * 4096)
    uploader = tusclient().TusClient(server.url + "/files/", headers={"Authorization": f"Bearer {secret}"}).uploader(
        str(second), chunk_size=256 * 1024, metadata={"filename": "two.bin"})
    uploader.upload()
    gc.collect()

    third = tmp_path / "three.txt"
    third.write_bytes(b"sent from the page\n" * 100)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url, timeout=PAGE_LOAD_TIMEOUT)  # /l/<secret> -> /?link=<secret> -> /
            page.wait_for_selector("body[data-ready]", state="attached", timeout=PAGE_LOAD_TIMEOUT)
            assert "link=" not in page.url  # the secret leaves the address bar
            info = page.locator("#link-info")
            info.locator(".link-limits", has_text="1 of 3 files left").wait_for(timeout=PAGE_LOAD_TIMEOUT)
            assert info.locator(".link-label").inner_text() == "Send me the video"
            assert not page.locator("#stored").is_visible() and not page.locator("#auth").is_visible()
            page.set_input_files("#files", [str(third)], timeout=PAGE_LOAD_TIMEOUT)
            page.wait_for_selector('li.job[data-name="three.txt"][data-state="done"]', timeout=SMALL_UPLOAD_TIMEOUT)
            info.locator(".link-limits", has_text="Nothing more").wait_for(timeout=PAGE_LOAD_TIMEOUT)
            assert errors == []
        finally:
            browser.close()

    items = httpx.get(server.url + "/uploads", params={"link": link_id}, headers=READER).json()["items"]
    assert sorted(item["filename"] for item in items) == ["one.txt", "three.txt", "two.bin"]
    assert re.search(rf"{link_id}\s+used_up\s+files 3/3", cli(server, "ls"))
    assert secret not in server.log()  # the access log names the link, never its secret
    assert f"link={link_id}" in server.log()
    assert cli(server, "revoke", link_id).strip() == f"{link_id} revoked"
    again = httpx.put(f"{server.url}/uploads/four.txt", params={"link": secret}, content=b"x")
    assert (again.status_code, again.json()["error"]) == (403, "link_revoked")


# --- --accept refuses at the first block -----------------------------------------------------

HUGE = 4 * GiB  # what the body claims; the client stops sending once the server answers


def send_until_answered(port: int, head: bytes, first_bytes: bytes, filler: bytes) -> tuple[bytes, int]:
    """Send `head` and then body bytes (`first_bytes`, then `filler` over and over) until the
    server answers or the declared length is sent; returns the answer and bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + first_bytes)
        sent = len(first_bytes)
        sock.setblocking(False)
        answer = b""
        deadline = time.monotonic() + 60
        while sent < HUGE and time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                if b"\r\n\r\n" in answer:
                    break
            except BlockingIOError:
                pass
            try:
                sent += sock.send(filler)
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    return answer, sent


def bytes_read_by_server(server: LiveServer, method: str, path: str) -> tuple[int, str]:
    """The body bytes the app received and the error code, from the request's access log line."""
    for _ in range(100):
        lines = [line for line in server.log().splitlines() if f" {method} {path} " in line]
        if lines:
            found = re.search(r" in=(\d+) .* error (\w+)", lines[-1])
            assert found, lines[-1]
            return int(found.group(1)), found.group(2)
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {method} {path}:\n{server.log()}")


@pytest.mark.parametrize("protocol", ["raw", "multipart", "tus"])
def test_accept_refuses_a_multi_gb_body_at_its_first_block(tmp_path: Path, protocol: str) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--accept", "image/*,application/pdf")
    try:
        text = b"this is not an image, whatever its name says\n" * 1000
        filler = b"more words that are still not an image\n" * 1600  # about 64 KiB
        if protocol == "raw":
            path = "/uploads/photo.png"
            head = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                    f"Content-Length: {HUGE}\r\n\r\n").encode()
        elif protocol == "multipart":
            path = "/uploads"
            text = (b'--b0undary\r\nContent-Disposition: form-data; name="f"; filename="photo.png"\r\n'
                    b"Content-Type: image/png\r\n\r\n" + text)
            head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
                    f"Content-Length: {HUGE}\r\n\r\n").encode()
        else:
            created = httpx.post(server.url + "/files/", headers={
                "tus-resumable": "1.0.0", "upload-length": str(HUGE), "upload-metadata": "filename cGhvdG8ucG5n"})
            path = created.headers["location"].removeprefix(server.url)
            head = (f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                    "Content-Type: application/offset+octet-stream\r\n"
                    f"Content-Length: {HUGE}\r\n\r\n").encode()
        answer, sent = send_until_answered(server.port, head, text, filler)
        assert answer.startswith(b"HTTP/1.1 415 "), answer[:300]
        read, error = bytes_read_by_server(server, head.split()[0].decode(), path)
        assert error == "unsupported_file_type"
        print(f"{protocol}: server read {read} bytes, client sent {sent} of {HUGE}")
        # The first block is 1 MiB; uvicorn reads ahead at most 64 KiB per buffered chunk.
        assert read <= 4 * MiB, (read, sent)
        assert sent < 512 * MiB, sent  # the client was told long before the body ended
        assert list((tmp_path / "data" / "files").glob("*/*")) == []
        assert list((tmp_path / "data" / "tmp").iterdir()) == []
        if protocol == "tus":
            assert httpx.head(server.url + path, headers={"tus-resumable": "1.0.0"}).status_code == 404
    finally:
        stop_server(server)
