"""tus against a real uvicorn process with real clients: tuspy (PyPI), `ingest upload
--resumable`, raw httpx through a faulty TCP proxy, and a server killed between PATCHes."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server, write_random_file
from tests.tcp_proxy import FaultyProxy

MiB = 1024 * 1024
TUS = {"tus-resumable": "1.0.0"}
OCTETS = {**TUS, "content-type": "application/offset+octet-stream"}


def tusclient():  # type: ignore[no-untyped-def]
    """tuspy, or a failure under CI (it is in the `test` extra) and a skip elsewhere."""
    if os.environ.get("CI") == "true":
        import tusclient.client

        return tusclient.client
    return pytest.importorskip("tusclient.client")


@pytest.fixture(scope="module")
def file_256mib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """256 MiB of random-looking bytes, made on the fly, and its sha256."""
    path = tmp_path_factory.mktemp("tus") / "big.bin"
    yield path, write_random_file(path, 256 * MiB)
    path.unlink()


def stored(server: LiveServer) -> list[dict[str, object]]:
    items: list[dict[str, object]] = httpx.get(server.url + "/uploads").json()["items"]
    return items


# tuspy 1.1.0 opens the file once per request and leaves closing it to the garbage collector.
TUSPY_LEAKS_FILES = pytest.mark.filterwarnings("ignore::ResourceWarning",
                                               "ignore::pytest.PytestUnraisableExceptionWarning")


@TUSPY_LEAKS_FILES
def test_tuspy_uploads_256_mib_in_chunks_with_checksums(
        live_server: LiveServer, file_256mib: tuple[Path, str]) -> None:
    path, digest = file_256mib

    def upload() -> int:
        client = tusclient().TusClient(live_server.url + "/files/")
        uploader = client.uploader(str(path), chunk_size=32 * MiB, upload_checksum=True,
                                   metadata={"filename": "big.bin", "filetype": "application/x-test"})
        uploader.upload()
        return int(uploader.offset)

    assert upload() == path.stat().st_size
    gc.collect()  # tuspy's leaked files are reclaimed here, under this test's warning filter
    [item] = stored(live_server)
    assert (item["filename"], item["size"], item["sha256"], item["content_type"]) == (
        "big.bin", path.stat().st_size, digest, "application/x-test")


@TUSPY_LEAKS_FILES
def test_tuspy_resumes_after_the_connection_drops_mid_patch(
        live_server: LiveServer, file_256mib: tuple[Path, str]) -> None:
    path, digest = file_256mib
    proxy = FaultyProxy(live_server.port)
    tus = tusclient()
    from tusclient.exceptions import TusCommunicationError, TusUploadFailed

    def interrupted() -> str:
        uploader = tus.TusClient(proxy.url + "/files/").uploader(
            str(path), chunk_size=64 * MiB, metadata={"filename": "resumed.bin"})
        proxy.cut_after(100 * MiB)  # inside the second PATCH
        with pytest.raises((TusUploadFailed, TusCommunicationError)):
            uploader.upload()
        return str(uploader.url)

    def resume(url: str) -> int:
        # A new client, as after a crash: only the URL is known; it asks for the offset.
        resumed = tus.TusClient(proxy.url + "/files/").uploader(str(path), url=url, chunk_size=64 * MiB)
        offset = int(resumed.offset)
        resumed.upload()
        return offset

    try:
        url = interrupted()
        assert proxy.faults == 1
        assert 64 * MiB <= resume(url) < 100 * MiB  # bytes past the first chunk survived
    finally:
        proxy.close()
        gc.collect()
    [item] = stored(live_server)
    assert (item["filename"], item["sha256"]) == ("resumed.bin", digest)


def test_a_stalled_connection_is_taken_over_by_the_reconnecting_client(live_server: LiveServer) -> None:
    body = os.urandom(24 * MiB)
    created = httpx.post(live_server.url + "/files/", headers={**TUS, "upload-length": str(len(body))})
    url = created.headers["location"]
    proxy = FaultyProxy(live_server.port)
    try:
        proxy.stall_after(10 * MiB)  # the server keeps waiting on an open, silent socket
        with pytest.raises(httpx.TimeoutException):
            httpx.patch(url.replace(live_server.url, proxy.url), content=body,
                        headers={**OCTETS, "upload-offset": "0"}, timeout=httpx.Timeout(3.0))
        offset = int(httpx.head(url, headers=TUS, timeout=30).headers["upload-offset"])
        assert 9 * MiB < offset <= 10 * MiB  # everything that got through, minus the headers
        done = httpx.patch(url, content=body[offset:], headers={**OCTETS, "upload-offset": str(offset)})
        assert done.status_code == 204
    finally:
        proxy.close()
    [item] = stored(live_server)
    assert item["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_server_killed_mid_patch_resumes_from_its_bytes_on_disk_after_restart(tmp_path: Path) -> None:
    body = os.urandom(32 * MiB)
    server = start_server(tmp_path / "data", "--no-fsync")
    try:
        created = httpx.post(server.url + "/files/", headers={**TUS, "upload-length": str(len(body))})
        url = created.headers["location"]
        sent = 0

        def slow_half() -> Iterator[bytes]:
            nonlocal sent
            for start in range(0, 12 * MiB, MiB):
                sent += MiB
                yield body[start:start + MiB]
            # Bytes are on disk once the server's write lane ran; wait for the offset to show
            # them, then crash the server mid-request.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if os.path.getsize(next((tmp_path / "data" / "tus").glob("*.bin"))) >= 8 * MiB:
                    break
                time.sleep(0.05)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            yield body[12 * MiB:]

        with pytest.raises(httpx.TransportError):
            httpx.patch(url, content=slow_half(), headers={**OCTETS, "upload-offset": "0"})
    finally:
        stop_server(server)
    server = start_server(tmp_path / "data", "--no-fsync", log_path=tmp_path / "second.log")
    try:
        url = url.replace(url.split("/files/")[0], server.url)
        offset = int(httpx.head(url, headers=TUS).headers["upload-offset"])
        assert 8 * MiB <= offset <= 12 * MiB
        response = httpx.patch(url, content=body[offset:], headers={**OCTETS, "upload-offset": str(offset)})
        assert response.status_code == 204
        [item] = stored(server)
        assert item["sha256"] == hashlib.sha256(body).hexdigest()
    finally:
        stop_server(server)


def test_cli_resumable_upload_resumes_when_run_again_after_an_interruption(
        live_server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    body = os.urandom(48 * MiB)
    path.write_bytes(body)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proxy = FaultyProxy(live_server.port)
    command = [sys.executable, "-m", "ingest", "upload", "--resumable", "--quiet", "--url", proxy.url, str(path)]
    try:
        proxy.stall_after(20 * MiB)
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        state_file = tmp_path / "cache" / "ingest" / "tus-uploads.json"
        deadline = time.monotonic() + 60
        while proxy.faults == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.faults == 1
        first.send_signal(signal.SIGINT)  # Ctrl-C
        _, interrupted = first.communicate(timeout=30)
        assert first.returncode == 130
        assert interrupted.decode().splitlines() == ["ingest: interrupted; run the same command again to resume"]
        [upload_url] = json.loads(state_file.read_text()).values()
        proxy.release()
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
    finally:
        proxy.close()
    [item] = stored(live_server)
    assert second.stdout.split()[:3] == [item["id"], hashlib.sha256(body).hexdigest(), str(len(body))]
    assert (item["filename"], item["content_type"]) == ("video.mp4", "video/mp4")
    assert json.loads(state_file.read_text()) == {}  # forgotten once done
    assert upload_url.startswith(proxy.url + "/files/")
    log = live_server.log()
    assert log.count("POST /files/") == 1  # the second run resumed; it did not start over
