"""The per-chunk cost of an upload, counted: Python function calls on the event loop per MiB
of body, through the whole in-process app (middlewares, guard, parser, sink), for each protocol.

Counted, never timed: a count does not depend on how busy the machine is. The bounds hold
the chunk path to a handful of calls; a per-chunk cancel scope, a generator or a wrapped
`receive` coming back would break them. Per-request and per-block work is spread over the
MiB and costs little here.
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from ingest.config import Settings
from tests.inprocess import Answer, InProcessApp

MiB = 1024 * 1024
CHUNK = 64 * 1024  # what uvicorn hands the app from a loopback socket, at least
BOUNDARY = b"hotpathboundary0123"
# Calls per MiB on the loop, the test's own fake `receive` included (one per chunk). Measured:
# 144 for multipart, fewer for raw and tus; before the fast path, 965 for multipart.
MAX_CALLS_PER_MIB = {"multipart": 200, "raw": 200, "tus": 200}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    data_dir = tmp_path_factory.mktemp("hot-path")
    with InProcessApp(Settings(data_dir=Path(data_dir), fsync=False)) as running:
        yield running


def _chunks(body: bytes) -> list[bytes]:
    return [body[index:index + CHUNK] for index in range(0, len(body), CHUNK)]


def _multipart(app: InProcessApp, payload: bytes) -> Answer:
    body = (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--" + BOUNDARY + b"--\r\n")
    answer = app.request("POST", "/uploads", chunks=_chunks(body), headers=[
        (b"content-type", b"multipart/form-data; boundary=" + BOUNDARY),
        (b"content-length", str(len(body)).encode())])
    assert answer.status == 201, answer.body
    return answer


def _raw(app: InProcessApp, payload: bytes) -> Answer:
    answer = app.request("PUT", "/uploads/f.bin", chunks=_chunks(payload),
                         headers=[(b"content-length", str(len(payload)).encode())])
    assert answer.status == 201, answer.body
    return answer


def _tus(app: InProcessApp, payload: bytes) -> Answer:
    tus = [(b"tus-resumable", b"1.0.0")]
    created = app.request("POST", "/files/", headers=[*tus, (b"upload-length", str(len(payload)).encode())])
    assert created.status == 201, created.body
    location = created.header("location")
    assert location is not None
    path = "/files/" + location.rstrip("/").rsplit("/", 1)[1]
    answer = app.request("PATCH", path, chunks=_chunks(payload), headers=[
        *tus, (b"content-type", b"application/offset+octet-stream"), (b"upload-offset", b"0"),
        (b"content-length", str(len(payload)).encode())])
    assert answer.status == 204, answer.body
    return answer


UPLOADS = {"multipart": _multipart, "raw": _raw, "tus": _tus}


def _calls_on_this_thread(upload: Any, app: InProcessApp, payload: bytes) -> int:
    calls = collections.Counter[str]()

    def count(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call":
            calls[frame.f_code.co_qualname] += 1

    sys.setprofile(count)
    try:
        upload(app, payload)
    finally:
        sys.setprofile(None)
    return calls.total()


@pytest.mark.parametrize("protocol", UPLOADS)
def test_each_mib_of_an_upload_body_costs_a_bounded_number_of_python_calls(
        app: InProcessApp, protocol: str) -> None:
    upload = UPLOADS[protocol]
    upload(app, os.urandom(MiB))  # warm: imports, first-use caches
    small = _calls_on_this_thread(upload, app, os.urandom(1 * MiB))
    large = _calls_on_this_thread(upload, app, os.urandom(33 * MiB))
    per_mib = (large - small) / 32
    print(f"{protocol}: {per_mib:.0f} Python calls per MiB of body ({per_mib * CHUNK / MiB:.1f} per chunk)")
    assert per_mib <= MAX_CALLS_PER_MIB[protocol], per_mib
