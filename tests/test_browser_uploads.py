"""The upload page in a real headless Chromium (Debian's), against a real uvicorn server.

Playwright drives /usr/bin/chromium; `playwright install` is never run. Every wait carries an
explicit timeout sized for what it waits for; none of them is a speed assertion.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Response, sync_playwright

from tests.conftest import LiveServer, require_tool, start_server, stop_server

MiB = 1024 * 1024
SECOND = 1000  # Playwright timeouts are in milliseconds

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic"]

# Generous bounds for a loopback upload on two busy cores; they only stop a hung test.
PAGE_LOAD_TIMEOUT = 30 * SECOND
BIG_UPLOAD_TIMEOUT = 300 * SECOND
SMALL_UPLOAD_TIMEOUT = 60 * SECOND


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = require_tool("chromium")  # Debian's /usr/bin/chromium; fails under CI=true if missing
    chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(autouse=True)
def remove_big_files(tmp_path: Path) -> Iterator[None]:
    """Leave only screenshots and logs behind: the generated and stored files take hundreds of MiB."""
    yield
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix not in {".png", ".log"}:
            path.unlink()


@dataclass
class Session:
    """One browser context (fresh localStorage and sessionStorage) on one page."""

    context: BrowserContext
    page: Page
    requests: list[tuple[str, str]] = field(default_factory=list)
    offsets: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def throttle(self, upload_bytes_per_second: int) -> None:
        """Slow the page's uploads (Chromium's own network emulation), so that a test can act
        while an upload is surely in progress."""
        cdp = self.context.new_cdp_session(self.page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1,
            "uploadThroughput": upload_bytes_per_second})

    def open(self, url: str) -> None:
        self.page.goto(url, timeout=PAGE_LOAD_TIMEOUT)
        self.page.wait_for_selector("body[data-ready]", state="attached", timeout=PAGE_LOAD_TIMEOUT)

    def choose(self, *paths: Path) -> None:
        # A file path, not a buffer: Playwright refuses buffers over 50 MB.
        self.page.set_input_files("#files", [str(p) for p in paths], timeout=PAGE_LOAD_TIMEOUT)

    def job(self, name: str) -> Any:
        return self.page.locator(f'li.job[data-name="{name}"]')

    def wait_for_state(self, name: str, state: str, timeout: float) -> None:
        self.page.wait_for_selector(f'li.job[data-name="{name}"][data-state="{state}"]', timeout=timeout)

    def wait_for_progress(self, name: str, at_least: int, timeout: float) -> None:
        self.page.wait_for_function(
            """([name, least]) => {
                const job = [...document.querySelectorAll('li.job')].find(li => li.dataset.name === name);
                return job && job.querySelector('progress').value >= least;
            }""", arg=[name, at_least], timeout=timeout, polling=50)

    def wait_for_listed(self, name: str, timeout: float) -> Any:
        row = self.page.locator("#stored tbody tr", has_text=name)
        row.first.wait_for(timeout=timeout)
        return row

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for m, url in self.requests if m == method and path_part in url)


@pytest.fixture
def session(browser: Browser) -> Iterator[Session]:
    context = browser.new_context(accept_downloads=False)
    page = context.new_page()
    page.set_default_timeout(PAGE_LOAD_TIMEOUT)
    opened = Session(context, page)
    page.on("request", lambda request: opened.requests.append((request.method, request.url)))
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    page.on("response", lambda response: record_offset(opened, response))
    yield opened
    context.close()
    assert opened.errors == [], f"the page raised: {opened.errors}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    running = start_server(tmp_path / "data", "--no-fsync")
    yield running
    stop_server(running)


def record_offset(session: Session, response: Response) -> None:
    """The Upload-Offset the server announced in answer to each tus HEAD (where a resume starts)."""
    if response.request.method == "HEAD" and "/files/" in response.url and response.ok:
        session.offsets.append((response.url, int(response.headers["upload-offset"])))


def make_file(path: Path, size: int) -> str:
    """Random bytes, no two MiB alike; returns the sha256."""
    digest = hashlib.sha256()
    block = os.urandom(MiB)
    with path.open("wb") as out:
        for index in range(0, size, MiB):
            chunk = (index.to_bytes(8, "big") + block[8:])[: size - index]
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def file_200_mib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    path = tmp_path_factory.mktemp("browser") / "video-200MiB.bin"
    digest = make_file(path, 200 * MiB + 12_345)
    yield path, digest
    path.unlink()


def listed(server: LiveServer, headers: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    items = httpx.get(server.url + "/uploads", headers=headers, timeout=10).json()["items"]
    return {item["filename"]: item for item in items}


def sha256_on_disk(server: LiveServer, file_id: str) -> str:
    digest = hashlib.sha256()
    with (server.data_dir / "files" / file_id[:2] / file_id).open("rb") as stored:
        while block := stored.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


# --- multipart fallback -----------------------------------------------------------------------

def test_page_uploads_a_file_by_multipart_and_lists_it(server: LiveServer, session: Session,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    digest = make_file(path, 24 * MiB + 7)
    session.open(server.url + "/?protocol=multipart")
    assert session.page.get_attribute("body", "data-protocol") == "multipart"
    session.choose(path)
    session.wait_for_state("report.pdf", "done", SMALL_UPLOAD_TIMEOUT)
    row = session.wait_for_listed("report.pdf", SMALL_UPLOAD_TIMEOUT)
    assert digest in row.inner_text()
    stored = listed(server)["report.pdf"]
    assert stored["sha256"] == digest and stored["size"] == 24 * MiB + 7
    assert sha256_on_disk(server, stored["id"]) == digest
    assert session.count("POST", "/uploads") == 1


def test_page_shows_the_servers_words_when_a_multipart_upload_is_too_large(
        tmp_path: Path, session: Session) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--max-request-size", "1MiB")
    try:
        path = tmp_path / "too-big.bin"
        make_file(path, 3 * MiB)
        session.open(server.url + "/?protocol=multipart")
        session.choose(path)
        session.wait_for_state("too-big.bin", "error", SMALL_UPLOAD_TIMEOUT)
        error = session.job("too-big.bin").locator(".job-error").inner_text()
        assert "exceeds the limit of 1048576 bytes (413)" in error
        assert listed(server) == {}
    finally:
        stop_server(server)


def test_page_asks_for_a_token_and_then_uploads_with_it(tmp_path: Path, session: Session) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--tokens", "right-token")
    try:
        path = tmp_path / "notes.txt"
        digest = make_file(path, 2 * MiB)
        session.open(server.url + "/")
        token_field = session.page.get_by_label("This server needs a token")
        token_field.wait_for(timeout=PAGE_LOAD_TIMEOUT)
        assert "Bearer" in session.page.locator("#auth-status").inner_text()

        token_field.fill("wrong-token")
        session.page.get_by_role("button", name="Use token").click()
        session.page.wait_for_function(
            "document.querySelector('#stored-status').textContent.includes('(401)')", timeout=PAGE_LOAD_TIMEOUT)

        token_field.fill("right-token")
        session.page.get_by_role("button", name="Use token").click()
        session.page.wait_for_selector("#auth-status:has-text('Token accepted')", timeout=PAGE_LOAD_TIMEOUT)
        session.choose(path)
        name = "notes.txt"
        session.wait_for_state(name, "done", SMALL_UPLOAD_TIMEOUT)
        session.wait_for_listed(name, SMALL_UPLOAD_TIMEOUT)
        stored = listed(server, {"authorization": "Bearer right-token"})[name]
        assert stored["sha256"] == digest
        token = session.page.evaluate("sessionStorage.getItem('ingest.token')")
        assert token == "right-token"
        # Once the token was accepted the page found the tus endpoint and sent the token there too.
        assert session.page.get_attribute("body", "data-protocol") == "tus"
        assert session.count("POST", "/files/") == 1
    finally:
        stop_server(server)


# --- tus --------------------------------------------------------------------------------------

def test_page_uploads_a_200_mib_file_through_tus_and_lists_it_with_its_sha256(
        server: LiveServer, session: Session, file_200_mib: tuple[Path, str], tmp_path: Path) -> None:
    path, digest = file_200_mib
    session.open(server.url + "/")
    assert session.page.get_attribute("body", "data-protocol") == "tus"
    session.choose(path)
    session.wait_for_state(path.name, "done", BIG_UPLOAD_TIMEOUT)
    row = session.wait_for_listed(path.name, SMALL_UPLOAD_TIMEOUT)
    assert digest in row.inner_text()
    assert "200.0 MiB" in row.inner_text()
    assert session.job(path.name).locator(".job-status").inner_text() == "100 % · uploaded"
    assert session.page.locator("#total-progress").get_attribute("value") == "100"
    assert session.page.locator("#total-text").inner_text().startswith("100 % · 1 of 1 files")

    stored = listed(server)[path.name]
    assert (stored["size"], stored["sha256"]) == (path.stat().st_size, digest)
    assert sha256_on_disk(server, stored["id"]) == digest
    assert session.count("POST", "/files/") == 1
    assert session.count("POST", "/uploads") == 0
    # The fingerprint is forgotten once the upload finished: nothing left to resume.
    assert session.page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))") == []

    screenshot = tmp_path / "finished-page.png"
    session.page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot of the finished page: {screenshot}")


def test_page_uploads_two_files_at_once(server: LiveServer, session: Session, tmp_path: Path) -> None:
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    digests = {first.name: make_file(first, 24 * MiB), second.name: make_file(second, 16 * MiB + 1)}
    session.throttle(16 * MiB)
    session.open(server.url + "/")
    session.choose(first, second)
    # Both move at the same time: each has sent something before either has finished.
    session.page.wait_for_function(
        """() => { const jobs = [...document.querySelectorAll('li.job')];
                   return jobs.length === 2 && jobs.every(li => li.dataset.state === 'uploading'
                                                          && li.querySelector('progress').value > 0); }""",
        timeout=SMALL_UPLOAD_TIMEOUT, polling=20)
    for name in digests:
        session.wait_for_state(name, "done", SMALL_UPLOAD_TIMEOUT)
        session.wait_for_listed(name, SMALL_UPLOAD_TIMEOUT)
    stored = listed(server)
    assert {name: stored[name]["sha256"] for name in digests} == digests
    assert session.page.locator("#total-text").inner_text().startswith("100 % · 2 of 2 files")


def test_page_resumes_a_tus_upload_after_the_server_restarts_mid_way(
        tmp_path: Path, session: Session) -> None:
    path = tmp_path / "survivor.bin"
    digest = make_file(path, 48 * MiB)
    server = start_server(tmp_path / "data", "--no-fsync")
    try:
        session.throttle(8 * MiB)
        session.open(server.url + "/")
        session.choose(path)
        session.wait_for_progress(path.name, 30, SMALL_UPLOAD_TIMEOUT)
        stop_server(server, signal.SIGKILL)  # a crash, mid-PATCH
        session.wait_for_state(path.name, "retrying", SMALL_UPLOAD_TIMEOUT)
        assert "connection lost" in session.job(path.name).locator(".job-status").inner_text()
        server = start_server(tmp_path / "data", "--no-fsync", port=server.port)
        session.wait_for_state(path.name, "done", SMALL_UPLOAD_TIMEOUT)
        session.wait_for_listed(path.name, SMALL_UPLOAD_TIMEOUT)
        stored = listed(server)[path.name]
        assert stored["sha256"] == digest
        assert sha256_on_disk(server, stored["id"]) == digest
        # One creation only, and the retry continued from what the server had kept (ingest keeps
        # the bytes of an interrupted PATCH, so this is where the stream was cut, not 0).
        assert session.count("POST", "/files/") == 1
        assert session.offsets and min(offset for _, offset in session.offsets) > 0
    finally:
        stop_server(server)


def test_page_resumes_a_tus_upload_after_a_reload_when_the_file_is_chosen_again(
        server: LiveServer, session: Session, tmp_path: Path) -> None:
    path = tmp_path / "reloaded.bin"
    digest = make_file(path, 48 * MiB)
    session.throttle(8 * MiB)
    session.open(server.url + "/")
    session.choose(path)
    session.wait_for_progress(path.name, 40, SMALL_UPLOAD_TIMEOUT)
    session.page.reload(timeout=PAGE_LOAD_TIMEOUT)
    session.page.wait_for_selector("body[data-ready]", state="attached", timeout=PAGE_LOAD_TIMEOUT)
    unfinished = session.page.locator("#unfinished")
    unfinished.wait_for(timeout=PAGE_LOAD_TIMEOUT)
    assert path.name in unfinished.inner_text()

    session.choose(path)
    session.wait_for_state(path.name, "done", SMALL_UPLOAD_TIMEOUT)
    session.wait_for_listed(path.name, SMALL_UPLOAD_TIMEOUT)
    assert listed(server)[path.name]["sha256"] == digest
    assert session.count("POST", "/files/") == 1
    assert session.offsets and session.offsets[-1][1] > 0  # resumed, not restarted
    assert unfinished.is_hidden()


def test_page_pauses_resumes_and_cancels_each_file(server: LiveServer, session: Session, tmp_path: Path) -> None:
    kept, dropped = tmp_path / "kept.bin", tmp_path / "dropped.bin"
    digest = make_file(kept, 40 * MiB)
    make_file(dropped, 40 * MiB)
    session.throttle(8 * MiB)
    session.open(server.url + "/")
    session.choose(kept, dropped)
    session.wait_for_progress(kept.name, 10, SMALL_UPLOAD_TIMEOUT)
    session.page.get_by_role("button", name=f"Pause {kept.name}").click()
    session.wait_for_state(kept.name, "paused", SMALL_UPLOAD_TIMEOUT)
    session.page.get_by_role("button", name=f"Cancel {dropped.name}").click()
    session.wait_for_state(dropped.name, "cancelled", SMALL_UPLOAD_TIMEOUT)
    session.page.wait_for_function(
        "() => Object.keys(localStorage).filter(k => k.startsWith('tus::')).length === 1",
        timeout=SMALL_UPLOAD_TIMEOUT)

    session.page.get_by_role("button", name=f"Resume {kept.name}").click()
    session.wait_for_state(kept.name, "done", SMALL_UPLOAD_TIMEOUT)
    session.wait_for_listed(kept.name, SMALL_UPLOAD_TIMEOUT)
    stored = listed(server)
    assert stored[kept.name]["sha256"] == digest
    assert dropped.name not in stored
    assert session.count("DELETE", "/files/") == 1  # the cancelled upload is terminated on the server
    assert session.count("POST", "/files/") == 2
    assert session.offsets and session.offsets[-1][1] > 0  # resumed, not restarted


def test_page_shows_the_servers_words_when_a_tus_upload_is_too_large(tmp_path: Path, session: Session) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--max-file-size", "1MiB")
    try:
        path = tmp_path / "huge.iso"
        make_file(path, 3 * MiB)
        session.open(server.url + "/")
        session.choose(path)
        session.wait_for_state(path.name, "error", SMALL_UPLOAD_TIMEOUT)
        error = session.job(path.name).locator(".job-error").inner_text()
        assert error == "Upload-Length 3145728 exceeds the limit of 1048576 bytes (413)"
        assert session.page.get_by_role("button", name=f"Retry {path.name}").is_visible()
        assert listed(server) == {}
    finally:
        stop_server(server)


def test_files_dropped_on_the_page_are_uploaded_then_downloaded_and_deleted_from_the_list(
        server: LiveServer, browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context(accept_downloads=True)
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_LOAD_TIMEOUT)
        page.goto(server.url + "/", timeout=PAGE_LOAD_TIMEOUT)
        page.wait_for_selector("body[data-ready]", state="attached", timeout=PAGE_LOAD_TIMEOUT)
        # A drop as the browser delivers it: a DataTransfer holding File objects.
        page.evaluate("""() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["hello from a drop\\n"], "dropped-a.txt", {type: "text/plain"}));
            transfer.items.add(new File([new Uint8Array(300000).fill(7)], "dropped-b.bin"));
            const zone = document.querySelector('#dropzone');
            for (const type of ['dragenter', 'dragover', 'drop']) {
                zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
            }
        }""")
        for name in ("dropped-a.txt", "dropped-b.bin"):
            page.wait_for_selector(f'li.job[data-name="{name}"][data-state="done"]', timeout=SMALL_UPLOAD_TIMEOUT)
        page.locator("#stored tbody tr", has_text="dropped-b.bin").wait_for(timeout=SMALL_UPLOAD_TIMEOUT)
        assert listed(server)["dropped-a.txt"]["sha256"] == hashlib.sha256(b"hello from a drop\n").hexdigest()

        with page.expect_download(timeout=SMALL_UPLOAD_TIMEOUT) as download_info:
            page.locator("#stored").get_by_role("link", name="Download dropped-b.bin").click()
        download = download_info.value
        assert download.suggested_filename == "dropped-b.bin"
        saved = tmp_path / "downloaded.bin"
        download.save_as(saved)
        assert saved.read_bytes() == bytes([7]) * 300000

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Delete dropped-a.txt").click()
        page.locator("#stored tbody tr", has_text="dropped-a.txt").wait_for(state="detached",
                                                                             timeout=SMALL_UPLOAD_TIMEOUT)
        assert set(listed(server)) == {"dropped-b.bin"}
        assert page.locator("#announcer").inner_text() == "dropped-a.txt deleted"
    finally:
        context.close()
