"""/docs in a real headless Chromium with every other origin blocked: Swagger UI renders the
API from the vendored files alone, and its "Try it out" works with the bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.conftest import LiveServer, require_tool, start_server, stop_server
from tests.test_browser_uploads import CHROMIUM_ARGS, PAGE_LOAD_TIMEOUT


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_tool("chromium")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def offline_page(browser: Browser, server: LiveServer) -> tuple[Page, list[str], list[str]]:
    """A page that may reach the server and nothing else; returns (page, blocked, errors)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(PAGE_LOAD_TIMEOUT)
    blocked: list[str] = []
    errors: list[str] = []

    def only_the_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(server.url).netloc:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return page, blocked, errors


def test_docs_render_every_operation_with_no_network(browser: Browser, tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync")
    try:
        page, blocked, errors = offline_page(browser, server)
        page.goto(server.url + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=PAGE_LOAD_TIMEOUT)
        paths = set(page.locator(".opblock-summary-path").all_inner_texts())
        assert {"/uploads", "/uploads/{file_id}/content", "/files/", "/files/{upload_id}"} <= {
            p.replace("\u200b", "") for p in paths}
        assert blocked == [] and errors == []
        page.context.close()
    finally:
        stop_server(server)


def test_docs_take_the_bearer_token_and_try_it_out_with_it(browser: Browser, tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-fsync", "--tokens", "s3cret")
    try:
        page, blocked, errors = offline_page(browser, server)
        page.goto(server.url + "/docs")
        page.wait_for_selector("#docs-status:has-text('needs a token')", timeout=PAGE_LOAD_TIMEOUT)
        page.fill("#docs-token", "s3cret")
        page.click("#docs-token-form button")
        page.wait_for_selector("#operations-files-listUploads", timeout=PAGE_LOAD_TIMEOUT)
        operation = page.locator("#operations-files-listUploads")
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        with page.expect_response(lambda r: "/uploads" in r.url and r.request.method == "GET") as answer:
            operation.locator("button.execute").click()
        assert answer.value.status == 200
        assert answer.value.request.headers["authorization"] == "Bearer s3cret"
        shown = operation.locator(".live-responses-table tbody .response-col_status").first
        shown.wait_for()
        assert shown.inner_text().strip().startswith("200")
        assert blocked == []
        assert [e for e in errors if "401" not in e] == []  # the first load, before the token, is refused
        page.context.close()
    finally:
        stop_server(server)
