"""Shared pieces of the property-based tests: example budgets, an independent multipart
parser (the oracle), and the invariants every answer must keep.

Budgets: each fuzz test asks for `examples(n)`; `make test` runs the numbers as written
(about 15,500 cases in all) and `make fuzz` multiplies them by INGEST_FUZZ_SCALE (100 by
default: about 1,550,000 cases) for a long local campaign.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import logging
import mimetypes
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from python_multipart.multipart import MultipartParser

from tests.conftest import stored_files, temp_files
from tests.inprocess import Answer, InProcessApp

# python-multipart logs every malformed byte it meets; the oracle's verdict is its return value.
logging.getLogger("python_multipart").setLevel(logging.CRITICAL)

FUZZ_SCALE = float(os.environ.get("INGEST_FUZZ_SCALE", "1"))
BLOB_PATH = re.compile(r"files/[0-9a-f]{2}/[0-9a-f]{32}")


def examples(count: int) -> settings:
    return settings(max_examples=max(1, int(count * FUZZ_SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], print_blob=True)


@dataclass(frozen=True)
class OraclePart:
    name: str | None
    filename: str | None
    content: bytes


def oracle_parse(boundary: bytes, body: bytes) -> list[OraclePart] | None:
    """python-multipart's reading of `body`, or None when it finds the body incomplete or bad.

    python-multipart shares no code with streaming-form-data or with ingest's framing guard.
    Content-Disposition parameters are read with the stdlib email package, which decodes
    RFC 2231/8187 `filename*` too.
    """
    parts: list[OraclePart] = []
    headers: list[tuple[bytes, bytes]] = []
    content = bytearray()
    header_name = bytearray()
    header_value = bytearray()
    ended = False

    def on_part_begin() -> None:
        headers.clear()
        content.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers.append((bytes(header_name), bytes(header_value)))
        header_name.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        content.extend(data[start:end])

    def on_part_end() -> None:
        disposition = next((v for k, v in headers if k.lower() == b"content-disposition"), b"")
        message = email.message_from_string(
            "Content-Disposition: " + disposition.decode("utf-8", "replace") + "\n\n",
            policy=email.policy.compat32)
        name = message.get_param("name", header="content-disposition")
        filename = message.get_filename()
        parts.append(OraclePart(name=name if isinstance(name, str) else None,
                                filename=filename, content=bytes(content)))

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_part_data": on_part_data, "on_part_end": on_part_end, "on_end": on_end,
    }, max_header_count=10_000, max_header_size=1 << 21)
    if not body.startswith(b"--" + boundary):
        # RFC 2046 §5.1.1 allows a preamble, ended by the first CRLF "--" boundary; ingest
        # drops it, python-multipart does not know it, so it is cut here.
        start = body.find(b"\r\n--" + boundary)
        if start < 0:
            return None
        body = body[start + 2:]
    try:
        parser.write(body)
        parser.finalize()
    except Exception:
        return None
    return parts if ended else None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_error_or_created(answer: Answer) -> None:
    """Every answer to an upload is a 201, or a 4xx JSON error body; never a 5xx."""
    assert answer.status == 201 or 400 <= answer.status < 500, (answer.status, answer.body[:500])
    body = answer.json()
    if answer.status != 201:
        assert set(body) == {"error", "detail"}, body
        assert isinstance(body["error"], str) and isinstance(body["detail"], str)


def assert_no_temp_files(app: InProcessApp) -> None:
    leftovers = temp_files(app.data_dir)
    assert leftovers == [], f"temporary files survived a finished request: {leftovers}"


def guessed_media_type(filename: str) -> str:
    """The media type of a file sent without one (or as application/octet-stream): what its
    name says (RFC 9110 §8.3: the server may guess), else application/octet-stream."""
    return mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"


def blob_path(app: InProcessApp, file_id: str) -> Path:
    return app.data_dir / "files" / file_id[:2] / file_id


def delete_stored(app: InProcessApp, file_id: str, *, statuses: frozenset[int] = frozenset({204})) -> None:
    """DELETE a stored file; afterwards its blob is gone from disk. Its emptied fan-out
    directory is removed too, so the walk of files/ after every case stays a few entries long
    (the store makes it again for the next blob that needs it)."""
    answer = app.request("DELETE", f"/uploads/{file_id}")
    assert answer.status in statuses, (answer.status, answer.body[:200])
    path = blob_path(app, file_id)
    assert not path.exists(), f"the blob of deleted file {file_id} is still on disk"
    with contextlib.suppress(OSError):  # not empty: other blobs live there
        path.parent.rmdir()


def check_and_remove_created(app: InProcessApp, answer: Answer, expected: list[tuple[str | None, bytes]], *,
                             media_types: Sequence[str | None] | None = None) -> None:
    """A 201 lists exactly the expected files (filename, bytes) and, when given, media types,
    each stored byte for byte (its size and SHA-256 in the answer, in the catalog and on disk);
    they are then deleted, to keep the store empty."""
    files = answer.json()["files"]
    assert [(f["size"], f["sha256"]) for f in files] == [(len(c), sha256(c)) for _, c in expected]
    if media_types is not None:
        assert len(media_types) == len(files)
    for index, (stored, (filename, content)) in enumerate(zip(files, expected, strict=True)):
        if filename is not None:
            assert stored["filename"] == filename
        if media_types is not None and media_types[index] is not None:
            assert stored["content_type"] == media_types[index], (stored, media_types[index])
        assert blob_path(app, stored["id"]).read_bytes() == content
        assert app.request("GET", f"/uploads/{stored['id']}").json() == {
            **stored, "url": stored["url"], "content_url": stored["content_url"]}
        delete_stored(app, stored["id"])


def blob_ids_on_disk(app: InProcessApp) -> list[str]:
    """The ids of the committed blobs under files/, sorted."""
    return sorted(path.name for path in stored_files(app.data_dir))


def assert_nothing_stored(app: InProcessApp) -> None:
    """Nothing is cataloged and nothing is on disk under files/ or tmp/: every file a test
    made it also deleted, so anything left was stored (or left behind) by a request that was
    refused, or was stored beyond what its answer listed."""
    listing = app.request("GET", "/uploads", query=b"limit=5").json()
    assert listing["items"] == [], listing
    assert blob_ids_on_disk(app) == [], "a blob is on disk that no answer listed"
    assert_no_temp_files(app)


def assert_only_ingest_paths(data_dir: Path) -> None:
    """Whatever a client sent, the data dir holds only ingest's own names."""
    for path in data_dir.rglob("*"):
        relative = path.relative_to(data_dir).as_posix()
        assert (relative in {"files", "tmp", "tus"} or relative.startswith("catalog.sqlite3")
                or re.fullmatch(r"tus/[0-9a-f]{32}(\.bin|\.json|\.\d+\.new)", relative)
                or re.fullmatch(r"files/[0-9a-f]{2}", relative) or BLOB_PATH.fullmatch(relative)), relative


def assert_headers_clean(answer: Answer) -> None:
    for name, value in answer.headers:
        assert not any(ch in value for ch in "\r\n\x00"), (name, value)
