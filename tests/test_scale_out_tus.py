"""tus on two nodes sharing S3 (Ceph) and PostgreSQL: PATCHes alternate between the nodes, and
an upload survives the SIGKILL of the node that was receiving it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from tests.backends import Ceph, multipart_uploads, object_keys, object_sha256
from tests.conftest import LiveServer

MiB = 1024 * 1024
TUS = {"tus-resumable": "1.0.0"}


def create(node: LiveServer, length: int) -> str:
    name = base64.b64encode(b"movie.bin").decode()
    response = httpx.post(f"{node.url}/files/", headers={**TUS, "upload-length": str(length),
                                                         "upload-metadata": f"filename {name}"})
    assert response.status_code == 201, response.text
    return urlsplit(response.headers["location"]).path


def patch(node: LiveServer, path: str, offset: int, body: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.patch(f"{node.url}{path}", content=body, timeout=120,
                       headers={**TUS, "upload-offset": str(offset),
                                "content-type": "application/offset+octet-stream"})


def offset_of(node: LiveServer, path: str) -> int:
    response = httpx.head(f"{node.url}{path}", headers=TUS)
    assert response.status_code == 200, response.text
    return int(response.headers["upload-offset"])


def stored_file(node: LiveServer, path: str) -> dict[str, object]:
    """The finished upload's stored file, by its id in the tus record (Location of the file)."""
    items = httpx.get(f"{node.url}/uploads").json()["items"]
    assert len(items) == 1
    return dict(items[0])


def wait_for_a_stored_part(ceph: Ceph, bucket: str, path: str) -> None:
    """Until (bounded) the node receiving the upload has stored a whole part. Looks at the
    store itself: a HEAD would ask that node to hand the upload over."""
    upload_id = path.rstrip("/").rpartition("/")[2]
    deadline = time.monotonic() + 60
    while not any("/chunk-" in key for key in object_keys(ceph.client(), bucket)
                  if key.startswith(f"partials/{upload_id}/")):
        assert time.monotonic() < deadline, "no part was stored"
        time.sleep(0.2)


def test_patches_alternating_between_two_nodes_build_one_file(
        nodes: list[LiveServer], ceph: Ceph, bucket: str) -> None:
    content = os.urandom(23 * MiB + 11)
    path = create(nodes[0], len(content))
    offset = 0
    for turn, size in enumerate((3 * MiB, 9 * MiB, 1 * MiB + 11, 10 * MiB)):
        node = nodes[turn % 2]
        assert offset_of(node, path) == offset
        response = patch(node, path, offset, content[offset:offset + size])
        assert response.status_code == 204, response.text
        offset += size
        assert int(response.headers["upload-offset"]) == offset
    stored = stored_file(nodes[1], path)
    expected = hashlib.sha256(content).hexdigest()
    assert stored["sha256"] == expected
    assert object_sha256(ceph.client(), bucket, f"files/{stored['id']}") == expected
    assert multipart_uploads(ceph.client(), bucket) == []
    assert [key for key in object_keys(ceph.client(), bucket) if "/chunk-" in key] == []


def test_an_upload_survives_killing_the_node_that_was_receiving_it(
        nodes: list[LiveServer], ceph: Ceph, bucket: str) -> None:
    content = os.urandom(30 * MiB)
    first, second = nodes
    path = create(first, len(content))
    sent = threading.Event()
    hold = threading.Event()

    def body() -> Iterator[bytes]:
        for start in range(0, 20 * MiB, MiB):  # 20 MiB: a few whole parts reach the store
            yield content[start:start + MiB]
        sent.set()
        hold.wait(60)  # the connection stays open: the node is killed mid-PATCH

    def doomed_patch() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the node dies under it
            patch(first, path, 0, body())

    sender = threading.Thread(target=doomed_patch)
    sender.start()
    assert sent.wait(60)
    wait_for_a_stored_part(ceph, bucket, path)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=30)
    hold.set()
    sender.join(timeout=60)

    # The other node resumes from what the store holds (whole parts only) and finishes.
    offset = offset_of(second, path)
    assert 0 < offset <= 20 * MiB
    response = patch(second, path, offset, content[offset:])
    assert response.status_code == 204, response.text
    expected = hashlib.sha256(content).hexdigest()
    stored = stored_file(second, path)
    assert stored["sha256"] == expected
    assert object_sha256(ceph.client(), bucket, f"files/{stored['id']}") == expected


def test_a_patch_on_another_node_takes_over_from_a_stalled_one(
        nodes: list[LiveServer], ceph: Ceph, bucket: str) -> None:
    content = os.urandom(20 * MiB)
    first, second = nodes
    path = create(first, len(content))
    sent = threading.Event()
    hold = threading.Event()
    answers: list[int] = []

    def body() -> Iterator[bytes]:
        for start in range(0, 12 * MiB, MiB):
            yield content[start:start + MiB]
        sent.set()
        hold.wait(60)  # a client whose connection went silent: the node is still reading

    def stalled_patch() -> None:
        with contextlib.suppress(httpx.HTTPError):
            answers.append(patch(first, path, 0, body()).status_code)

    sender = threading.Thread(target=stalled_patch)
    sender.start()
    try:
        assert sent.wait(60)
        wait_for_a_stored_part(ceph, bucket, path)
        time.sleep(1)  # pacing only: let the first node read the rest of what was sent
        # The resuming client asks the other node for the offset: the first node hands over
        # (saves all it received, tail included, and releases) before the answer, so the
        # offset is the true one and the PATCH from there goes straight through — neither a
        # 423 until the silent client times out, nor a 409 from a stale offset.
        offset = offset_of(second, path)
        assert offset >= 8 * MiB
        finish = patch(second, path, offset, content[offset:])
        assert finish.status_code == 204, finish.text
    finally:
        hold.set()
        sender.join(timeout=60)
    expected = hashlib.sha256(content).hexdigest()
    stored = stored_file(second, path)
    assert stored["sha256"] == expected
    assert object_sha256(ceph.client(), bucket, f"files/{stored['id']}") == expected
