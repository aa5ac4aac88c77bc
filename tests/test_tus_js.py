"""tus-js-client (npm, pinned in tests/js/package.json) under Node.js against a real server:
one chunked upload with metadata and per-chunk checksums, one 4-way parallel upload that the
server concatenates."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, require_tool

JS_DIR = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def tus_js() -> list[str]:
    """The command that runs tests/js/tus_upload.mjs; installs tus-js-client once if needed
    (from the npm registry; `.ci/run` does it beforehand)."""
    node = require_tool("node")
    if not (JS_DIR / "node_modules" / "tus-js-client").is_dir():
        npm = require_tool("npm")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=300)
    return [node, str(JS_DIR / "tus_upload.mjs")]


def upload(tus_js: list[str], server: LiveServer, path: Path, mode: str) -> dict[str, object]:
    result = subprocess.run([*tus_js, server.url + "/files/", str(path), mode],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


@pytest.mark.parametrize("mode", ["single", "parallel"])
def test_tus_js_client_uploads_with_metadata(tus_js: list[str], live_server: LiveServer,
                                             tmp_path: Path, mode: str) -> None:
    body = os.urandom(8 * 1024 * 1024 + 12345)
    path = tmp_path / "from-node.bin"
    path.write_bytes(body)
    answer = upload(tus_js, live_server, path, mode)
    [item] = httpx.get(live_server.url + "/uploads").json()["items"]
    assert answer["fileIds"] == [item["id"]]
    assert (item["filename"], item["content_type"], item["size"], item["sha256"]) == (
        "from-node.bin", "application/x-tus-js", len(body), hashlib.sha256(body).hexdigest())
    assert item["metadata"] == {"origin": "node"}
    if mode == "single":
        assert answer["checksums"] == 9  # every PATCH carried Upload-Checksum
        assert live_server.log().count("PATCH /files/") == 9
    else:
        # ingest's access log (ingest/observe/accesslog.py): "<id> <client> POST /files/ 201 in=…"
        assert live_server.log().count(" POST /files/ 201 ") == 5  # 4 parts + the final
