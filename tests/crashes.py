"""What the crash tests share: a real server that kills itself at a crash point
(INGEST_CRASH_AT, ingest/crashpoints.py) or is killed with SIGKILL, and the invariants that
must hold after it restarts on the same data dir.

Restarts use `--temp-max-age 1` once a second has passed since the crash, so the start-up
sweep's age rule covers everything the crash left: whatever survives it is garbage.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer, start_server

TUS = {"tus-resumable": "1.0.0"}
OCTETS = {**TUS, "content-type": "application/offset+octet-stream"}
AGE_RULE_SECONDS = 1  # --temp-max-age of a restart


def descendants(pid: int) -> list[int]:
    """The processes started by `pid` (uvicorn's workers), and theirs, from /proc."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                for child in (task / "children").read_text().split():
                    found += [int(child), *descendants(int(child))]
    return found


def kill_9(server: LiveServer) -> None:
    """SIGKILL the server and every worker it started (each by its pid), and reap it."""
    for pid in [server.process.pid, *descendants(server.process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait(timeout=30)


def start(data_dir: Path, *args: str, crash_at: str | None = None,
          env: dict[str, str] | None = None) -> LiveServer:
    full_env = dict(env or {})
    if crash_at:
        full_env["INGEST_CRASH_AT"] = crash_at
    return start_server(data_dir, "--temp-max-age", str(AGE_RULE_SECONDS), *args, env=full_env)


def crash_points_hit(server: LiveServer) -> list[str]:
    return [line for line in server.log().splitlines() if "crash point" in line and "SIGKILL" in line]


def wait_for_crash(server: LiveServer, point: str, timeout: float = 30) -> None:
    """The server (or one of its workers) killed itself at `point`; then all of it is killed."""
    deadline = time.monotonic() + timeout
    while not any(f"crash point {point} reached" in line for line in crash_points_hit(server)):
        assert time.monotonic() < deadline, f"crash point {point} was never reached:\n{server.log()}"
        assert server.process.poll() is None or crash_points_hit(server), \
            f"the server died elsewhere than at {point}:\n{server.log()}"
        time.sleep(0.02)
    kill_9(server)  # with --workers 2, the supervisor and the other worker are still up
    assert server.process.returncode == -signal.SIGKILL, server.process.returncode


def past_the_age_rule(crashed_at: float) -> None:
    time.sleep(max(0.0, crashed_at + AGE_RULE_SECONDS + 0.1 - time.time()))


# --- clients -------------------------------------------------------------------------------

def tus_create(server: LiveServer, length: int, name: str = "crash.bin") -> str:
    encoded = base64.b64encode(name.encode()).decode()
    created = httpx.post(server.url + "/files/", headers={
        **TUS, "upload-length": str(length), "upload-metadata": f"filename {encoded}"}, timeout=30)
    assert created.status_code == 201, created.text
    return str(created.headers["location"]).removeprefix(server.url)


def tus_patch(server: LiveServer, path: str, offset: int, chunk: bytes, *, checksum: bool = False,
              timeout: float = 60) -> httpx.Response:
    headers = {**OCTETS, "upload-offset": str(offset)}
    if checksum:
        headers["upload-checksum"] = "sha1 " + base64.b64encode(hashlib.sha1(chunk).digest()).decode()
    return httpx.patch(server.url + path, content=chunk, headers=headers, timeout=timeout)


def tus_head(server: LiveServer, path: str) -> httpx.Response:
    return httpx.head(server.url + path, headers=TUS, timeout=60)


def listed(server: LiveServer) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    url: str | None = server.url + "/uploads?limit=1000"
    while url:
        page = httpx.get(url, timeout=60).json()
        items.update({item["id"]: item for item in page["items"]})
        url = page["next"]
    return items


# --- invariants ----------------------------------------------------------------------------

@dataclass
class TusUploadRecord:
    """What a client knows of one tus upload: its body, what was acknowledged, what was sent."""

    path: str
    body: bytes
    acknowledged: int = 0  # the offset of the last 204
    sent: int = 0  # the furthest byte any PATCH sent
    file_id: str | None = None


@dataclass
class Expectations:
    acknowledged: dict[str, str] = field(default_factory=dict)  # file id -> sha256 answered 201/204
    # sha256 of bodies sent whole whose answer never came: may be stored (commit past the row)
    sent_whole: set[str] = field(default_factory=set)
    tus: list[TusUploadRecord] = field(default_factory=list)


def check_after_restart(server: LiveServer, expected: Expectations, *,
                        s3: tuple[Any, str] | None = None) -> dict[str, dict[str, Any]]:
    """Every invariant a restart after a crash must hold; returns the listed files."""
    files = listed(server)
    for file_id, sha in expected.acknowledged.items():
        assert file_id in files, f"acknowledged file {file_id} was lost"
        assert files[file_id]["sha256"] == sha, f"acknowledged file {file_id} changed"
    tus_shas = {hashlib.sha256(record.body).hexdigest() for record in expected.tus
                if record.sent == len(record.body)}
    for file_id, item in files.items():
        assert (file_id in expected.acknowledged or item["sha256"] in expected.sent_whole
                or item["sha256"] in tus_shas), f"listed but never sent whole: {item}"
    for record in expected.tus:
        head = tus_head(server, record.path)
        assert head.status_code == 200, (record.path, head.status_code, head.text)
        offset = int(head.headers["upload-offset"])
        assert record.acknowledged <= offset <= record.sent, (record.path, record.acknowledged,
                                                               offset, record.sent)
        if "ingest-file-id" in head.headers:
            record.file_id = head.headers["ingest-file-id"]
            assert offset == len(record.body)
            assert record.file_id in files, f"{record.path}: finished by HEAD, not by the restart"
            assert files[record.file_id]["sha256"] == hashlib.sha256(record.body).hexdigest()
        else:
            assert offset < len(record.body), f"{record.path}: whole but not stored"
            if s3 is None:
                held = (server.data_dir / "tus" / (record.path.rstrip("/").rsplit("/", 1)[1] + ".bin"))
                assert held.read_bytes() == record.body[:offset], f"{record.path}: bytes beyond HEAD's offset"
        record.acknowledged = offset
    if s3 is None:
        _check_local_storage(server.data_dir, files)
    else:
        _check_s3_storage(*s3, files)
    return files


def _check_local_storage(data_dir: Path, files: dict[str, dict[str, Any]]) -> None:
    assert sorted((data_dir / "tmp").iterdir()) == [], "temp files left after the start-up sweep"
    assert list((data_dir / "tus").glob("*.new")) == [], "tus state staging files left"
    blobs = {path.name: path for path in (data_dir / "files").glob("??/*")}
    assert set(blobs) == set(files), f"catalog and storage disagree: {set(blobs) ^ set(files)}"
    for file_id, item in files.items():
        assert _sha256_of(blobs[file_id]) == item["sha256"], f"{file_id}: bytes differ from the catalog"
    for state_path in (data_dir / "tus").glob("*.json"):
        state = json.loads(state_path.read_bytes())
        if state.get("file_id"):
            assert not state_path.with_suffix(".bin").exists(), f"{state_path.stem}: done but bytes kept"
            assert state["file_id"] in files, f"{state_path.stem}: done but its file is not listed"


def _check_s3_storage(client: Any, bucket: str, files: dict[str, dict[str, Any]]) -> None:
    from tests.backends import multipart_uploads, object_sha256

    assert multipart_uploads(client, bucket) == [], "S3 multipart uploads left after the sweep"
    keys = [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for obj in page.get("Contents", [])]
    assert [key for key in keys if key.startswith("incoming/")] == [], "incoming objects left"
    blobs = {key.removeprefix("files/") for key in keys if key.startswith("files/")}
    assert blobs == set(files), f"catalog and storage disagree: {blobs ^ set(files)}"
    for file_id, item in files.items():
        assert object_sha256(client, bucket, f"files/{file_id}") == item["sha256"]
    partials: dict[str, set[str]] = {}
    for key in keys:
        if key.startswith("partials/"):
            upload_id, _, name = key.removeprefix("partials/").partition("/")
            partials.setdefault(upload_id, set()).add(name)
    for upload_id, names in partials.items():
        prefix = f"partials/{upload_id}/"
        state = json.loads(client.get_object(Bucket=bucket, Key=prefix + "state.json")["Body"].read())
        if state.get("file_id"):
            assert names == {"state.json"}, f"{upload_id}: done but bytes kept: {names}"
            continue
        manifest = json.loads(client.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read())
        named = {chunk["key"].removeprefix(prefix) for chunk in manifest["chunks"]}
        assert names - {"state.json", "manifest.json"} <= named, f"{upload_id}: chunks no manifest names"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
