"""The upload page's look in a real headless Chromium: no horizontal scroll at 390 and 1280 px,
the drop zone, keyboard focus, what a finished upload shows, and axe-core's accessibility rules
(the axe-core npm package from tests/js, injected into the page by the test only).

Screenshots (desktop and mobile, light and dark) go to the test's temporary directory, and to
$INGEST_SCREENSHOT_DIR when it is set (`make screenshots` writes docs/screenshots/ that way).
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import LiveServer, require_tool, start_server, stop_server
from tests.test_browser_uploads import CHROMIUM_ARGS, PAGE_LOAD_TIMEOUT, SMALL_UPLOAD_TIMEOUT

AXE = Path(__file__).parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"mobile": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
LONG_NAME = "quarterly-report-with-a-very-long-file-name-that-must-wrap-somewhere-2026-final-v3.csv"


def png(width: int, height: int) -> bytes:
    """A real PNG (a colour gradient), written by hand: no image library."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160))
                                       for x in range(width)) for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_tool("chromium")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    running = start_server(tmp_path / "data", "--no-fsync", "--max-file-size", "2MiB")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    made = {"image": folder / "sunset.png", "long": folder / LONG_NAME, "big": folder / "too-big.iso"}
    made["image"].write_bytes(png(48, 32))
    made["long"].write_bytes(b"region,total\n" * 2000)
    made["big"].write_bytes(os.urandom(3 * 1024 * 1024))
    return made


def open_page(browser: Browser, server: LiveServer, viewport: str, scheme: str = "light",
              **options: Any) -> Page:
    context = browser.new_context(viewport=VIEWPORTS[viewport], color_scheme=scheme, **options)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(PAGE_LOAD_TIMEOUT)
    # Playwright turns file-chooser interception on when a listener is first added, without
    # waiting for the browser: added only inside expect_file_chooser, a key press may come
    # first and open (then cancel) a real dialog. Added here, it is on long before.
    page.on("filechooser", lambda chooser: None)
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready]", state="attached")
    return page


def upload(page: Page, *paths: Path) -> None:
    page.set_input_files("#files", [str(p) for p in paths])
    for path in paths:
        page.wait_for_selector(f'li.job[data-name="{path.name}"]:is([data-state="done"], [data-state="error"])',
                               timeout=SMALL_UPLOAD_TIMEOUT)


def scroll_widths(page: Page) -> list[int]:
    return page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")


def save_screenshot(page: Page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    target = os.environ.get("INGEST_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name), full_page=True)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", ["mobile", "desktop"])
def test_page_fits_its_viewport_with_no_horizontal_scroll(browser: Browser, server: LiveServer,
                                                          files: dict[str, Path], tmp_path: Path,
                                                          viewport: str, scheme: str) -> None:
    page = open_page(browser, server, viewport, scheme)
    try:
        upload(page, files["image"], files["long"], files["big"])
        page.locator("#stored tbody tr", has_text=LONG_NAME).first.wait_for()
        page.wait_for_function("() => [...document.querySelectorAll('img.job-thumb')].some(i => i.naturalWidth > 0)")
        page.wait_for_load_state("networkidle")  # the list's refresh after the last upload is done
        scroll_width, client_width = scroll_widths(page)
        assert scroll_width == client_width == VIEWPORTS[viewport]["width"]
        # Every action of every stored file is on screen, not past the right edge (measured in one
        # evaluation, so that a refresh of the list cannot come in between).
        count, right = page.evaluate("""() => {
            const actions = [...document.querySelectorAll('#stored td.actions > *, #stored button.copy')];
            return [actions.length, Math.max(...actions.map(e => e.getBoundingClientRect().right))];
        }""")
        assert count >= 6 and right <= client_width
        shown_as = page.evaluate("() => [...document.querySelectorAll('#stored tbody tr')]"
                                 ".map(row => getComputedStyle(row).display)")
        assert set(shown_as) == ({"block"} if viewport == "mobile" else {"table-row"})  # cards on a phone
        save_screenshot(page, tmp_path, f"page-{viewport}-{scheme}.png")
        if viewport == "mobile":  # the narrowest phones in use
            page.set_viewport_size({"width": 360, "height": 740})
            assert scroll_widths(page) == [360, 360]
    finally:
        page.context.close()


def test_a_finished_upload_shows_its_name_size_hash_download_and_thumbnail(
        browser: Browser, server: LiveServer, files: dict[str, Path]) -> None:
    page = open_page(browser, server, "desktop", permissions=["clipboard-read", "clipboard-write"])
    try:
        image = files["image"]
        upload(page, image)
        job = page.locator(f'li.job[data-name="{image.name}"]')
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        # After a tus upload ends the page asks for the stored file's description, so the
        # result shows a moment after the job is marked done.
        job.locator(".job-result").wait_for(state="visible", timeout=SMALL_UPLOAD_TIMEOUT)
        assert job.locator(".job-stored-name").inner_text() == image.name
        assert job.locator(".job-stored-size").get_attribute("title") == f"{image.stat().st_size} bytes"
        shown = job.locator(".job-sha256 code")
        assert shown.get_attribute("data-sha256") == digest
        assert len(shown.locator(".short").inner_text()) < 20  # shortened on screen
        assert digest in shown.inner_text()  # whole for screen readers and find-in-page
        job.get_by_role("button", name=f"Copy the SHA-256 of {image.name}").click()
        page.wait_for_selector("#announcer:has-text('copied')")
        assert page.evaluate("navigator.clipboard.readText()") == digest
        link = job.get_by_role("link", name=f"Download {image.name}, just uploaded")
        file_id = job.get_attribute("data-id")
        assert link.get_attribute("href") == f"uploads/{file_id}/content"
        thumb = job.locator("img.job-thumb")
        page.wait_for_function("img => img.naturalWidth === 48", arg=thumb.element_handle())
        assert thumb.get_attribute("src") == f"uploads/{file_id}/content"
        box = thumb.bounding_box()
        assert box is not None and box["width"] <= 80  # sized in CSS
    finally:
        page.context.close()


def test_the_drop_zone_highlights_while_a_file_is_dragged_over_it(browser: Browser, server: LiveServer) -> None:
    page = open_page(browser, server, "desktop")
    try:
        before = page.eval_on_selector("#dropzone", "zone => getComputedStyle(zone).backgroundColor")
        page.evaluate("""() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["x"], "x.txt"));
            document.querySelector('#dropzone').dispatchEvent(
                new DragEvent('dragenter', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""")
        assert page.eval_on_selector("#dropzone", "zone => zone.classList.contains('dragging')")
        page.wait_for_function("before => getComputedStyle(document.querySelector('#dropzone')).backgroundColor "
                               "!== before", arg=before)
        page.evaluate("""() => document.querySelector('#dropzone').dispatchEvent(
            new DragEvent('dragleave', {bubbles: true, relatedTarget: null}))""")
        assert not page.eval_on_selector("#dropzone", "zone => zone.classList.contains('dragging')")
        # One big target: a click on the zone's empty space opens the file picker.
        with page.expect_file_chooser(timeout=PAGE_LOAD_TIMEOUT):
            page.locator("#dropzone .drop-title").click()
    finally:
        page.context.close()


def test_the_file_button_is_reached_by_keyboard_and_shows_its_focus(browser: Browser, server: LiveServer) -> None:
    page = open_page(browser, server, "desktop")
    try:
        assert page.eval_on_selector("#files", "input => input.getBoundingClientRect().width") <= 1  # hidden
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "files":
                break
        assert page.evaluate("document.activeElement.id") == "files"
        assert page.eval_on_selector("#files-label", "label => getComputedStyle(label).outlineStyle") == "solid"
        assert page.eval_on_selector("#files", "input => [...input.labels].map(l => l.textContent.trim())") == [
            "Choose files"]  # one label, the visible button
        page.evaluate("""() => { window.fileInputClicks = [];
            document.querySelector('#files').addEventListener(
                'click', event => window.fileInputClicks.push(event.isTrusted)); }""")
        with page.expect_file_chooser(timeout=PAGE_LOAD_TIMEOUT):
            page.keyboard.press(" ")
        assert page.evaluate("window.fileInputClicks") == [True]  # the key press itself opened it
        assert page.get_attribute("#announcer", "aria-live") == "polite"
    finally:
        page.context.close()


@pytest.mark.parametrize(("viewport", "scheme"), [("mobile", "light"), ("desktop", "dark")])
def test_axe_finds_no_serious_or_critical_violation(browser: Browser, server: LiveServer, files: dict[str, Path],
                                                    viewport: str, scheme: str) -> None:
    assert AXE.exists(), "run `npm ci --prefix tests/js` (.ci/run does)"
    # The page's CSP allows only its own scripts: the test context bypasses it to inject axe.
    page = open_page(browser, server, viewport, scheme, bypass_csp=True)
    try:
        upload(page, files["image"], files["big"])
        page.locator("#stored tbody tr").first.wait_for()
        page.add_script_tag(path=str(AXE))
        results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in results["violations"]
                   if v["impact"] in ("serious", "critical")]
        assert serious == []
        assert results["passes"] or results["violations"] is not None  # axe really ran
    finally:
        page.context.close()


def test_with_a_token_the_thumbnail_is_fetched_with_it(browser: Browser, files: dict[str, Path],
                                                       tmp_path: Path) -> None:
    server = start_server(tmp_path / "token-data", "--no-fsync", "--tokens", "s3cret")
    try:
        page = open_page(browser, server, "mobile")
        page.fill("#token", "s3cret")
        page.get_by_role("button", name="Use token").click()
        page.wait_for_selector("#auth-status:has-text('Token accepted')")
        upload(page, files["image"])
        thumb = page.locator(f'li.job[data-name="{files["image"].name}"] img.job-thumb')
        page.wait_for_function("img => img.naturalWidth === 48", arg=thumb.element_handle())
        assert (thumb.get_attribute("src") or "").startswith("blob:")  # an <img> cannot send the token
        page.context.close()
    finally:
        stop_server(server)
