"""Two ingest nodes (real uvicorn processes) on one Ceph cluster (one radosgw each) sharing one
PostgreSQL catalog: every node serves every upload, big files stream into S3 with flat memory,
and a client that goes away leaves no multipart upload behind."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends import NODE_PART_SIZE as PART_SIZE
from tests.backends import NODE_PARTS_IN_FLIGHT as PARTS_IN_FLIGHT
from tests.backends import Ceph, multipart_uploads, object_keys, object_sha256
from tests.conftest import LiveServer, free_port, require_tool

MiB = 1024 * 1024


def current_rss_bytes(server: LiveServer) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


@pytest.mark.slow
def test_a_1gib_multipart_upload_streams_into_s3_and_every_node_serves_it(
        nodes: list[LiveServer], ceph: Ceph, bucket: str, big_file: tuple[Path, str]) -> None:
    curl = require_tool("curl")
    path, expected = big_file
    first, second = nodes
    baseline = current_rss_bytes(first)
    result = subprocess.run([curl, "-sS", "--fail-with-body", "-F", f"file=@{path}", first.url + "/uploads"],
                            capture_output=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    stored = httpx.Response(201, content=result.stdout).json()["files"][0]
    assert stored["sha256"] == expected and stored["size"] == path.stat().st_size

    # The object in the store: its bytes read back, and the sha256 kept as its metadata.
    client = ceph.client()
    key = f"files/{stored['id']}"
    assert object_keys(client, bucket) == [key]
    assert client.head_object(Bucket=bucket, Key=key)["Metadata"]["sha256"] == expected
    assert object_sha256(client, bucket, key) == expected
    assert multipart_uploads(client, bucket) == []

    # Memory: parts being filled and sent, the sink's blocks, and a constant — not the file.
    bound = PART_SIZE * (PARTS_IN_FLIGHT + 1) + 64 * MiB
    grown = first.peak_rss_bytes() - baseline
    assert grown <= bound, f"RSS grew {grown / MiB:.0f} MiB for a 1 GiB upload, bound {bound / MiB:.0f} MiB"

    # The other node knows it (shared catalog) and serves it (shared store).
    described = httpx.get(f"{second.url}/uploads/{stored['id']}").json()
    assert described["sha256"] == expected
    tail = httpx.get(f"{second.url}/uploads/{stored['id']}/content",
                     headers={"range": f"bytes={path.stat().st_size - MiB}-"})
    assert tail.status_code == 206
    with path.open("rb") as source:
        source.seek(-MiB, os.SEEK_END)
        assert tail.content == source.read()


def test_a_raw_put_to_one_node_is_listed_served_and_deleted_by_the_other(
        nodes: list[LiveServer], ceph: Ceph, bucket: str) -> None:
    content = os.urandom(40 * MiB + 123)  # five parts of 8 MiB and a short last one
    expected = hashlib.sha256(content).hexdigest()
    first, second = nodes
    response = httpx.put(f"{first.url}/uploads/disk.img", content=content, timeout=120)
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert stored["sha256"] == expected
    assert object_sha256(ceph.client(), bucket, f"files/{stored['id']}") == expected

    listed = httpx.get(f"{second.url}/uploads").json()["items"]
    assert [item["id"] for item in listed] == [stored["id"]]
    download = httpx.get(f"{second.url}/uploads/{stored['id']}/content", timeout=120)
    assert download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == expected
    assert httpx.head(f"{second.url}/uploads/{stored['id']}/content").headers["etag"] == f'"{expected}"'

    assert httpx.delete(f"{second.url}/uploads/{stored['id']}").status_code == 204
    assert httpx.get(f"{first.url}/uploads/{stored['id']}").status_code == 404
    assert object_keys(ceph.client(), bucket) == []


def test_a_client_that_disconnects_mid_upload_leaves_no_multipart_upload(
        nodes: list[LiveServer], ceph: Ceph, bucket: str) -> None:
    first = nodes[0]
    client = ceph.client()
    declared = 200 * MiB
    with socket.create_connection(("127.0.0.1", first.port)) as sock:
        sock.sendall(f"PUT /uploads/cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n".encode())
        block = os.urandom(MiB)
        for _ in range(40):  # five parts' worth: a multipart upload is under way
            sock.sendall(block)
        deadline = time.monotonic() + 60
        while not multipart_uploads(client, bucket) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(multipart_uploads(client, bucket)) == 1
    # The socket is closed: the server must notice and abort. Poll, bounded.
    deadline = time.monotonic() + 60
    while multipart_uploads(client, bucket) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert multipart_uploads(client, bucket) == []
    assert object_keys(client, bucket) == []
    assert httpx.get(f"{first.url}/uploads").json()["items"] == []


@pytest.fixture
def nginx_in_front(tmp_path: Path, nodes: list[LiveServer]) -> Iterator[str]:
    """nginx running deploy/nginx/scale-out.conf, its upstream pointed at the two nodes."""
    nginx = require_tool("nginx")
    site = (Path(__file__).parent.parent / "deploy" / "nginx" / "scale-out.conf").read_text()
    servers = "".join(f"    server 127.0.0.1:{node.port};\n" for node in nodes)
    assert "    server ingest:8000 max_fails=0;" in site and "    listen 80;" in site
    port = free_port()
    site = (site.replace("    server ingest:8000 max_fails=0;", servers.rstrip("\n"))
            .replace("    listen 80;", f"    listen 127.0.0.1:{port};"))
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "site.conf").write_text(site)
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n"
        f"  proxy_temp_path {prefix}/proxy;\n  include {prefix}/site.conf;\n}}\n")
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                "-g", "daemon off;"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (prefix / "error.log").read_text()
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_nginx_balances_uploads_across_the_nodes_and_any_node_serves_each(
        nginx_in_front: str, nodes: list[LiveServer]) -> None:
    contents = {f"f{n}.bin": os.urandom(2 * MiB + n) for n in range(6)}
    ids = {}
    for name, content in contents.items():
        response = httpx.put(f"{nginx_in_front}/uploads/{name}", content=content, timeout=60)
        assert response.status_code == 201, response.text
        ids[name] = response.json()["files"][0]["id"]
    for node in nodes:  # round robin: every node took some of the uploads
        assert "PUT /uploads/" in node.log()
    for name, file_id in ids.items():
        for base in (nginx_in_front, *(node.url for node in nodes)):
            assert httpx.get(f"{base}/uploads/{file_id}/content", timeout=60).content == contents[name]


def test_an_upload_link_made_on_one_node_is_honoured_and_revoked_on_the_other(nodes: list[LiveServer]) -> None:
    first, second = nodes
    created = httpx.post(first.url + "/links", json={"max_files": 2, "max_size": 1000}).json()
    link = {"authorization": f"Bearer {created['secret']}"}
    assert httpx.put(second.url + "/uploads/a.bin", content=b"a" * 600, headers=link).status_code == 201
    too_big = httpx.put(first.url + "/uploads/b.bin", content=b"b" * 600, headers=link)
    assert (too_big.status_code, too_big.json()["error"]) == (413, "link_limit_exceeded")  # 400 left
    assert httpx.put(first.url + "/uploads/b.bin", content=b"b" * 400, headers=link).status_code == 201
    used_up = httpx.put(second.url + "/uploads/c.bin", content=b"c", headers=link)
    assert (used_up.status_code, used_up.json()["error"]) == (403, "link_used_up")
    httpx.delete(f"{second.url}/links/{created['link']['id']}")
    revoked = httpx.get(first.url + "/links/current", headers=link)
    assert (revoked.status_code, revoked.json()["error"]) == (403, "link_revoked")
    listed = httpx.get(second.url + "/uploads", params={"link": created["link"]["id"]}).json()["items"]
    assert sorted(item["filename"] for item in listed) == ["a.bin", "b.bin"]
