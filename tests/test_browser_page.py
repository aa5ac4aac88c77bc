"""The upload page's server side: where it is served, with which headers, and without a token."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from ingest.config import Settings
from ingest.web import browser
from tests.conftest import app_client

pytestmark = pytest.mark.anyio

VENDOR = browser.STATIC_DIR / "vendor" / "tus-js-client"


async def test_index_is_the_upload_page_with_a_strict_content_security_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Upload files</h1>" in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_page_references_only_its_own_assets_by_relative_url(client: httpx.AsyncClient) -> None:
    # Relative URLs keep the page working under a proxy's path prefix and on a closed network.
    page = (await client.get("/")).text
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert references, "the page loads no assets"
    for reference in references:
        if reference.startswith("data:"):
            continue
        assert not reference.startswith(("/", "http:", "https:", "//")), reference
        assert (await client.get("/" + reference)).status_code == 200, reference


@pytest.mark.parametrize(("path", "media_type"), [
    ("/static/app.js", "text/javascript"),
    ("/static/style.css", "text/css"),
    ("/static/vendor/tus-js-client/tus.min.js", "text/javascript"),
])
async def test_static_assets_are_served_with_their_media_type(
        client: httpx.AsyncClient, path: str, media_type: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)


async def test_unknown_static_path_is_a_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/static/nothing.js")).status_code == 404


async def test_page_and_assets_load_without_a_token_while_the_api_needs_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", fsync=False, tokens=("s3cret",))
    async with app_client(settings) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/static/app.js")).status_code == 200
        assert (await client.get("/static/vendor/tus-js-client/tus.min.js")).status_code == 200
        refused = await client.get("/uploads")
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        allowed = await client.get("/uploads", headers={"authorization": "Bearer s3cret"})
        assert allowed.status_code == 200


@pytest.mark.parametrize("path", ["/static/../uploads", "/static/%2e%2e/uploads", "/static/..%2fuploads",
                                  "/static/../../catalog.sqlite3"])
async def test_static_prefix_never_reaches_the_api_or_the_data_without_a_token(tmp_path: Path, path: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", fsync=False, tokens=("s3cret",))
    async with app_client(settings) as client:
        # httpx itself resolves a literal `..` (giving a 401 for /uploads); the encoded forms
        # reach the server as they are and must stay inside the static directory.
        response = await client.get(path)
        assert response.status_code in (401, 404)
        assert "items" not in response.text and "SQLite" not in response.text


def test_vendored_tus_client_matches_its_recorded_provenance() -> None:
    note = (VENDOR / "README.md").read_text()
    recorded = re.search(r"`tus.min.js` \| `([0-9a-f]{64})`", note)
    assert recorded, "the vendor README must record the bundle's sha256"
    assert hashlib.sha256((VENDOR / "tus.min.js").read_bytes()).hexdigest() == recorded.group(1)
    assert "MIT" in (VENDOR / "LICENSE").read_text() or "Permission is hereby granted" in (
        VENDOR / "LICENSE").read_text()


def test_package_data_declares_every_static_file() -> None:
    # `pip install .` ships only what pyproject.toml declares; a new asset must be covered.
    import fnmatch
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["ingest"]
    package_dir = Path(browser.__file__).parents[1]  # the `ingest` package
    for path in browser.STATIC_DIR.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package_dir).as_posix()
            assert any(fnmatch.fnmatch(relative, pattern) and relative.count("/") == pattern.count("/")
                       for pattern in patterns), f"{relative} is not declared as package data"
