"""A tus upload's running SHA-256 is saved with its state, so another process continues it
without reading the stored prefix back."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from ingest.config import Settings
from ingest.storage.local_partials import LocalPartials
from ingest.tus import hash_state
from ingest.tus.hash_state import UploadHash
from tests.inprocess import InProcessApp

TUS = [(b"tus-resumable", b"1.0.0")]
PATCH = [*TUS, (b"content-type", b"application/offset+octet-stream")]


def _patch(app: InProcessApp, path: str, offset: int, chunk: bytes) -> Any:
    return app.request("PATCH", path, chunks=[chunk], headers=[
        *PATCH, (b"upload-offset", str(offset).encode()), (b"content-length", str(len(chunk)).encode())])


def test_a_patch_in_a_new_process_continues_the_saved_hash_without_rereading_the_upload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if hash_state.PySha256 is None:
        pytest.skip("rehashes has no wheel for this platform; the prefix is re-read instead")
    content = os.urandom(3 * 1024 * 1024 + 5)
    settings = Settings(data_dir=tmp_path / "data", fsync=False)
    with InProcessApp(settings) as first:
        created = first.request("POST", "/files/", headers=[*TUS, (b"upload-length", str(len(content)).encode())])
        location = created.header("location")
        assert location is not None
        path = "/files/" + location.rstrip("/").rsplit("/", 1)[1]
        assert _patch(first, path, 0, content[:2_000_003]).status == 204

    def no_reading_back(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the stored prefix was read back to rebuild the hash")

    monkeypatch.setattr(LocalPartials, "read_partial", no_reading_back)
    with InProcessApp(settings) as second:  # a restart: nothing of the first process is left
        answer = _patch(second, path, 2_000_003, content[2_000_003:])
        assert answer.status == 204, answer.body
        file_id = answer.header("ingest-file-id")
        stored = second.request("GET", f"/uploads/{file_id}").json()
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()


def test_a_state_saved_by_another_version_is_ignored() -> None:
    upload_hash = UploadHash()
    upload_hash.update(b"abc")
    saved = upload_hash.saved()
    if saved is None:
        pytest.skip("rehashes has no wheel for this platform")
    assert UploadHash.restore(saved) is not None
    assert UploadHash.restore("rehashes-0.0.0:" + saved.partition(":")[2]) is None
    assert UploadHash.restore(saved[:-4] + "!!!!") is None


def test_a_restored_hash_continues_to_the_same_digest_as_hashlib() -> None:
    upload_hash = UploadHash()
    upload_hash.update(b"x" * 100_001)
    restored = UploadHash.restore(upload_hash.saved()) or upload_hash.copy()
    restored.update(bytearray(b"y" * 7))
    assert restored.hexdigest() == hashlib.sha256(b"x" * 100_001 + b"y" * 7).hexdigest()
