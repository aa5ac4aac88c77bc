"""The image built from Dockerfile and the deployment of docker-compose.yml, run with podman.

The image is built once per session on a local Debian base (tests/containers.py), then run
alone (user, health check, volume, contents) and as docker-compose.yml's deployment, brought
up by podman-compose with tests/compose.test.yml: app and nginx containers on the host's
loopback, nginx proxying through deploy/nginx/ingest.conf. Under CI=true a missing podman or
mmdebstrap fails these tests (podman-compose comes with the test extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, require_tool, sha256_of, wait_until
from tests.containers import ROOT, BuiltImage, Deployment, base_image, build_app_image, podman, podman_env

MiB = 1024 * 1024
MAX_FILE_SIZE = 1100 * MiB  # over the 1 GiB uploads, under the 2 GiB one refused with 413
STOP_GRACE = 60  # seconds: docker-compose.yml's stop_grace_period for the app
figures: dict[str, str] = {}  # printed at the end of the module (pytest -s shows them)


@pytest.fixture(scope="session")
def app_image() -> Iterator[BuiltImage]:
    require_tool("podman")
    base = base_image("localhost/ingest-base:bookworm")
    built = build_app_image(f"localhost/ingest-test:{secrets.token_hex(4)}", base)
    figures["image build"] = f"{built.seconds:.1f} s"
    figures["image size"] = f"{built.size_bytes / 1e6:.0f} MB"
    yield built
    podman("rmi", "--force", built.tag, check=False)


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    for name, value in figures.items():
        print(f"\ncontainer figure: {name}: {value}", end="")


def _run_detached(image: str, name: str, *args: str) -> None:
    podman("run", "--detach", "--rm", f"--name={name}", "--network=host", *args, image)


# --- the image alone -------------------------------------------------------------------------

def test_the_image_runs_as_the_non_root_user(app_image: BuiltImage) -> None:
    assert podman("image", "inspect", "--format", "{{.Config.User}}", app_image.tag).stdout.strip() == "ingest"
    uid = podman("run", "--rm", app_image.tag, "id", "-u").stdout.strip()
    assert uid != "0"
    assert int(uid) == 10001


def test_the_image_holds_no_compiler_no_test_tools_and_no_bytecode(app_image: BuiltImage) -> None:
    probe = ("for tool in gcc cc g++ make pytest; do command -v $tool; done; "
             "/opt/ingest/bin/python -m pip list --format=freeze; "
             "find /opt/ingest -name '*.pyc' | wc -l; echo PYTHONDONTWRITEBYTECODE=$PYTHONDONTWRITEBYTECODE")
    output = podman("run", "--rm", app_image.tag, "sh", "-c", probe).stdout
    lines = output.splitlines()
    installed = {line.split("==")[0].lower() for line in lines if "==" in line}
    assert "ingest" in installed
    assert not installed & {"pytest", "mypy", "ruff", "hypothesis", "playwright", "boto3", "psycopg"}
    assert not [line for line in lines if line.startswith("/")], output  # no tool found on PATH
    assert "PYTHONDONTWRITEBYTECODE=1" in lines
    assert lines[-2] == "0", output  # no .pyc files: pip --no-compile, and none written since


def test_healthcheck_passes_once_the_app_answers(app_image: BuiltImage) -> None:
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}",
                               app_image.tag).stdout)
    assert config and "/healthz" in " ".join(config["Test"])
    name = f"ingest-health-{secrets.token_hex(3)}"
    _run_detached(app_image.tag, name, f"--env=INGEST_PORT={free_port()}", "--env=INGEST_HOST=127.0.0.1")
    try:
        # podman has no systemd timer here to run health checks; `healthcheck run` runs one now.
        assert wait_until(lambda: podman("healthcheck", "run", name, check=False).returncode == 0, timeout=60)
        status = podman("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
        assert status == "healthy"
    finally:
        podman("rm", "--force", "--volumes", name, check=False)


def test_the_healthcheck_fails_when_nothing_answers(app_image: BuiltImage) -> None:
    """The control: the same check on a container whose server is not running."""
    name = f"ingest-sleep-{secrets.token_hex(3)}"
    podman("run", "--detach", "--rm", f"--name={name}", "--network=host", app_image.tag, "sleep", "60")
    try:
        assert podman("healthcheck", "run", name, check=False).returncode != 0
    finally:
        podman("rm", "--force", "--volumes", "--time=0", name, check=False)


def test_data_is_a_volume_the_user_can_write(app_image: BuiltImage) -> None:
    volumes = json.loads(podman("image", "inspect", "--format", "{{json .Config.Volumes}}", app_image.tag).stdout)
    assert "/data" in volumes
    volume = f"ingest-probe-{secrets.token_hex(3)}"
    try:
        output = podman("run", "--rm", f"--volume={volume}:/data", app_image.tag, "sh", "-c",
                        "echo ok > /data/probe && cat /data/probe && stat -c %U /data").stdout.split()
        assert output == ["ok", "ingest"]
    finally:
        podman("volume", "rm", "--force", volume, check=False)


# --- the compose deployment ------------------------------------------------------------------

@pytest.fixture(scope="module")
def deployment(app_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    nginx_image = base_image("localhost/ingest-nginx:bookworm")
    app_port, nginx_port = free_port(), free_port()
    site = tmp_path_factory.mktemp("site")
    (site / "upstream.conf").write_text(f"server 127.0.0.1:{app_port};\n")
    (site / "server.conf").write_text(f"listen 127.0.0.1:{nginx_port};\nserver_name _;\n")
    # The shipped alias of the files directory: compose mounts the data volume into nginx.
    shutil.copy(ROOT / "deploy" / "nginx" / "site" / "files.conf", site / "files.conf")
    env = {**podman_env(), "INGEST_TEST_IMAGE": app_image.tag, "INGEST_TEST_NGINX_IMAGE": nginx_image,
           "INGEST_TEST_APP_PORT": str(app_port), "INGEST_TEST_SITE_DIR": str(site),
           "INGEST_MAX_FILE_SIZE": f"{MAX_FILE_SIZE // MiB}MiB"}
    deployed = Deployment(project=f"ingest-test-{secrets.token_hex(3)}", env=env, app_port=app_port,
                          nginx_port=nginx_port)
    started = time.monotonic()
    deployed.compose("up", "--detach")
    try:
        assert wait_until(lambda: _healthy(deployed), timeout=90), deployed.compose("logs").stdout[-3000:]
        figures["compose up to healthy through nginx"] = f"{time.monotonic() - started:.1f} s"
        yield deployed
    finally:
        deployed.compose("down", "--volumes", "--timeout=5", timeout=300)


def _healthy(deployed: Deployment) -> bool:
    try:
        return httpx.get(deployed.url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _curl(*args: str, timeout: float = 600) -> tuple[int, str]:
    result = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True,
                            text=True, timeout=timeout, check=False)
    body, _, status = result.stdout.rpartition("\n")
    return int(status or 0), body


def _stored_sha256(deployed: Deployment, file_id: str) -> str:
    """SHA-256 of the bytes at rest in the named volume, read from the host."""
    matches = list((deployed.volume_path() / "files").glob(f"*/{file_id}*"))
    assert len(matches) == 1, matches
    return sha256_of(matches[0])


def test_compose_brings_up_the_app_behind_nginx_and_its_healthcheck_passes(deployment: Deployment) -> None:
    assert podman("healthcheck", "run", deployment.container("app"), check=False).returncode == 0
    served = httpx.get(deployment.url + "/healthz")
    assert served.json() == {"status": "ok"}
    assert "nginx" in served.headers.get("server", "")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["curl -F", "curl -T"])
def test_a_1gib_upload_through_the_nginx_container_is_stored_with_its_sha256(
        deployment: Deployment, big_file: tuple[Path, str], how: str) -> None:
    path, expected = big_file
    started = time.monotonic()
    if how == "curl -F":
        status, body = _curl("-F", f"file=@{path}", deployment.url + "/uploads")
    else:
        status, body = _curl("-T", str(path), deployment.url + "/uploads/")
    seconds = time.monotonic() - started
    assert status == 201, body
    stored = json.loads(body)["files"][0]
    assert stored["sha256"] == expected
    assert stored["size"] == path.stat().st_size
    assert stored["content_url"].startswith(deployment.url)  # the URL the client used, via nginx
    assert _stored_sha256(deployment, stored["id"]) == expected
    figures[f"1 GiB {how} through nginx + app containers"] = \
        f"{seconds:.1f} s, {path.stat().st_size / seconds / 1e6:.0f} MB/s"


def test_the_apps_413_reaches_the_client_through_nginx_as_json(deployment: Deployment, tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.bin"
    with sparse.open("wb") as handle:
        handle.truncate(2 * MAX_FILE_SIZE)  # declared length over the app's max_file_size, not nginx's limit
    status, body = _curl("-T", str(sparse), deployment.url + "/uploads/too-big.bin")
    assert status == 413, body
    assert json.loads(body)["error"] == "file_too_large"


def _tus(deployed: Deployment, method: str, url: str, **kwargs: object) -> httpx.Response:
    headers = {"tus-resumable": "1.0.0", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.request(method, url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def test_a_tus_upload_survives_a_kill_of_the_app_container_and_a_restart(deployment: Deployment) -> None:
    content = os.urandom(24 * MiB)
    half = len(content) // 2
    created = _tus(deployment, "POST", deployment.url + "/files",
                   headers={"upload-length": str(len(content)), "upload-metadata": "filename a2lsbGVkLmJpbg=="})
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    patched = _tus(deployment, "PATCH", location, content=content[:half],
                   headers={"upload-offset": "0", "content-type": "application/offset+octet-stream"})
    assert patched.status_code == 204, patched.text

    podman("kill", deployment.container("app"))
    assert not _healthy(deployment)
    podman("start", deployment.container("app"))
    assert wait_until(lambda: _healthy(deployment), timeout=60)

    offset = int(_tus(deployment, "HEAD", location).headers["upload-offset"])
    assert offset == half  # every byte of the finished PATCH is on the volume
    finished = _tus(deployment, "PATCH", location, content=content[offset:],
                    headers={"upload-offset": str(offset), "content-type": "application/offset+octet-stream"})
    assert finished.status_code == 204, finished.text
    file_id = finished.headers["ingest-file-id"]
    assert _stored_sha256(deployment, file_id) == hashlib.sha256(content).hexdigest()


def test_podman_stop_lets_an_upload_in_flight_finish_within_the_grace_period(
        deployment: Deployment, tmp_path: Path) -> None:
    source = tmp_path / "slow.bin"
    size = 48 * MiB
    with source.open("wb") as handle:
        handle.write(os.urandom(size))
    expected = sha256_of(source)
    outcome: dict[str, tuple[int, str]] = {}

    def upload() -> None:  # about 6 s at 8 MB/s: still sending when the stop begins
        outcome["result"] = _curl("--limit-rate", "8M", "-T", str(source), deployment.url + "/uploads/slow.bin")

    sender = threading.Thread(target=upload)
    sender.start()
    assert wait_until(lambda: list((deployment.volume_path() / "tmp").glob("*")) != [], timeout=30)
    started = time.monotonic()
    deployment.compose("stop", "app", timeout=STOP_GRACE + 30)  # podman stop -t <stop_grace_period>
    stopped_after = time.monotonic() - started
    sender.join(timeout=60)
    status, body = outcome["result"]
    try:
        assert status == 201, body
        assert json.loads(body)["files"][0]["sha256"] == expected
        assert stopped_after < STOP_GRACE, f"the app took {stopped_after:.1f} s to stop"
        state = podman("inspect", "--format", "{{.State.ExitCode}}", deployment.container("app")).stdout.strip()
        assert state == "0"  # it exited on its own, not killed at the end of the grace period
    finally:
        podman("start", deployment.container("app"))
        assert wait_until(lambda: _healthy(deployment), timeout=60)
    figures["podman stop with an upload in flight"] = f"stopped after {stopped_after:.1f} s"


def test_stored_files_survive_compose_down_and_up(deployment: Deployment) -> None:
    content = os.urandom(3 * MiB)
    created = httpx.put(deployment.url + "/uploads/kept.bin", content=content,
                        headers={"content-type": "application/octet-stream"}, timeout=60)
    assert created.status_code == 201
    file_id = created.json()["files"][0]["id"]
    deployment.compose("down", "--timeout=30")
    assert not _healthy(deployment)
    deployment.compose("up", "--detach")
    assert wait_until(lambda: _healthy(deployment), timeout=90)
    again = httpx.get(f"{deployment.url}/uploads/{file_id}/content", timeout=60)
    assert again.status_code == 200
    assert again.content == content
