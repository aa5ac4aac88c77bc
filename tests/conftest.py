"""Shared fixtures: in-process app clients, a real uvicorn server, multipart bodies."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ingest.app import create_app
from ingest.catalog.sqlite import SqliteCatalog
from ingest.config import Settings
from ingest.models import StoredFile
from ingest.multipart.parser import Form, receive_form
from ingest.storage.local import LocalStorage
from ingest.uploads import UploadService
from tests.inprocess import body_of

IN_CI = os.environ.get("CI") == "true"

pytest_plugins = ["tests.backends"]  # Ceph (S3) and PostgreSQL fixtures for the scale-out tests


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", fsync=False)


@contextlib.asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of a fresh app, its lifespan started and stopped around it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as client:
        yield client


def multipart_body(parts: list[tuple[bytes, bytes]], boundary: bytes = b"b0undary") -> bytes:
    """Build a body from (header block, content) pairs, byte for byte as given."""
    body = b""
    for headers, content in parts:
        body += b"--" + boundary + b"\r\n" + headers + b"\r\n" + content + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


def file_part(name: str, filename: str, content: bytes, content_type: str | None = None) -> tuple[bytes, bytes]:
    headers = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    if content_type:
        headers += f"Content-Type: {content_type}\r\n"
    return headers.encode(), content


def field_part(name: str, value: str) -> tuple[bytes, bytes]:
    return f'Content-Disposition: form-data; name="{name}"\r\n'.encode(), value.encode()


MULTIPART = {"content-type": "multipart/form-data; boundary=b0undary"}

# A form of a field and two files, the first holding lookalikes of its boundary.
FORM_CONTENT = b"line one\r\n--b0undar not a boundary\r\n--b0undaryX still data\r\n\r"
FORM = multipart_body([
    field_part("note", "hello"),
    file_part("file", "a.txt", FORM_CONTENT, "text/plain"),
    file_part("file", "b.bin", b"\x00\r\n" * 50, "application/x-thing"),
])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def write_random_file(path: Path, size: int) -> str:
    """`size` random-looking bytes, made fast (one random MiB, varied per MiB so no two MiB
    are alike); returns their sha256."""
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with path.open("wb") as out:
        for index in range(size // len(block)):
            varied = index.to_bytes(4, "big") + block[4:]
            digest.update(varied)
            out.write(varied)
        tail = os.urandom(size % len(block))
        digest.update(tail)
        out.write(tail)
    return digest.hexdigest()


def temp_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "tmp").glob("*"))


def stored_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "files").glob("*/*") if p.is_file())


def assert_nothing_kept(data_dir: Path) -> None:
    """No temporary file and no committed blob is left on disk."""
    assert temp_files(data_dir) == []
    assert stored_files(data_dir) == []


# --- the upload service without HTTP -----------------------------------------------------------

@pytest.fixture
async def upload_service(settings: Settings) -> AsyncIterator[UploadService]:
    """An UploadService over local storage in the data dir and its SQLite catalog, started."""
    storage = LocalStorage(settings.data_dir, fsync=False)
    storage.prepare()
    service = UploadService(settings, storage, SqliteCatalog(settings.catalog_path))
    await service.start()
    yield service
    await service.stop()


async def receive_multipart(service: UploadService, chunks: Sequence[bytes],
                            content_type: str = MULTIPART["content-type"]) -> tuple[Form, list[StoredFile]]:
    """A multipart body, in these chunks, through the framing guard and parser, then committed."""
    form = await receive_form(content_type, body_of(chunks), service, service.settings, request=None)
    return form, await service.commit(form.files)


def read_stored(settings: Settings, stored: StoredFile) -> bytes:
    return (settings.data_dir / "files" / stored.id[:2] / stored.id).read_bytes()


# --- a real server ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def peak_rss_bytes(self) -> int:
        """VmHWM of the server process: the most resident memory it ever held."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(data_dir: Path, *extra_args: str, env: dict[str, str] | None = None,
                 log_path: Path | None = None, port: int | None = None) -> LiveServer:
    port = port or free_port()
    log_path = log_path or data_dir.parent / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "ingest", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(data_dir), *extra_args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    full_env.update(env or {})
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    server = LiveServer(f"http://127.0.0.1:{port}", port, data_dir, process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        time.sleep(0.05)
    stop_server(server)
    raise AssertionError(f"server did not become healthy:\n{server.log()}")


def stop_server(server: LiveServer, sig: int = signal.SIGTERM) -> None:
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path / "data", "--no-fsync")
    yield server
    stop_server(server)


def wait_until(condition: Callable[[], object], timeout: float = 20.0) -> bool:
    """Poll `condition` every 50 ms until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def require_tool(name: str) -> str:
    """The path of a command-line tool; a missing one fails under CI and skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 1 GiB file of random bytes, made once per session, and its sha256."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    return path, write_random_file(path, 1024 * 1024 * 1024)
