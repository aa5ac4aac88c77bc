"""/docs, server side: served without a token, its own assets only, Swagger UI as recorded."""

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

VENDOR = browser.STATIC_DIR / "vendor" / "swagger-ui"


async def test_docs_loads_without_a_token_while_the_api_and_its_document_need_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", fsync=False, tokens=("s3cret",))
    async with app_client(settings) as client:
        page = await client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        for reference in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            if reference in ("./", "openapi.json") or reference.startswith("data:"):
                continue
            assert not reference.startswith(("/", "http:", "https:", "//")), reference
            assert (await client.get("/" + reference)).status_code == 200, reference
        assert (await client.get("/openapi.json")).status_code == 401
        allowed = await client.get("/openapi.json", headers={"authorization": "Bearer s3cret"})
        assert allowed.status_code == 200


async def test_docs_runs_only_its_own_scripts(client: httpx.AsyncClient) -> None:
    policy = (await client.get("/docs")).headers["content-security-policy"]
    assert "script-src 'self';" in policy and "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy


@pytest.mark.parametrize("name", ["swagger-ui-bundle.js", "swagger-ui.css"])
def test_vendored_swagger_ui_matches_its_recorded_provenance(name: str) -> None:
    note = (VENDOR / "README.md").read_text()
    recorded = re.search(rf"`{re.escape(name)}` \| `([0-9a-f]{{64}})`", note)
    assert recorded, f"the vendor README must record the sha256 of {name}"
    assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == recorded.group(1)
    assert "Apache License" in (VENDOR / "LICENSE").read_text()
