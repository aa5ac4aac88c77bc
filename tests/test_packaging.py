"""The package as a user installs it: sdist and wheel built with `python -m build`, checked by
`twine check`, the wheel installed with no extras into a fresh venv, and that install run.

The light install carries neither boto3 nor psycopg; choosing their backends without the
extra is a one-line error naming it; the upload page's files ship inside the wheel and are
served from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import ingest
from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "ingest" / "web" / "static"


def clean_env() -> dict[str, str]:
    """This environment without INGEST_* settings (in-process CLI tests may have left some)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("INGEST_")}


@dataclass
class Built:
    sdist: Path
    wheel: Path
    venv: Path

    def command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "ingest"), *args], capture_output=True,
                              text=True, timeout=timeout, env=clean_env(), check=False)


def _run(*command: str, cwd: Path | None = None, timeout: float = 300) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                            check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """sdist, then the wheel built from that sdist (`python -m build`'s default), then the
    wheel alone installed into a fresh venv."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", str(out), str(ROOT))
    sdist, = out.glob("ingest-*.tar.gz")
    wheel, = out.glob("ingest-*.whl")
    target = tmp_path_factory.mktemp("light") / "venv"
    venv.create(target, with_pip=True)
    _run(str(target / "bin" / "pip"), "install", "--quiet", str(wheel))
    return Built(sdist=sdist, wheel=wheel, venv=target)


def test_sdist_and_wheel_pass_twine_check(built: Built) -> None:
    output = _run(sys.executable, "-m", "twine", "check", "--strict", str(built.sdist), str(built.wheel))
    assert output.count("PASSED") == 2, output


def test_wheel_holds_every_static_file_and_the_vendored_tus_js_client(built: Built) -> None:
    expected = {f"ingest/web/static/{path.relative_to(STATIC).as_posix()}"
                for path in STATIC.rglob("*") if path.is_file()}
    assert "ingest/web/static/vendor/tus-js-client/tus.min.js" in expected
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    assert expected <= names, sorted(expected - names)


def test_light_install_has_neither_boto3_nor_psycopg(built: Built) -> None:
    probe = ("import importlib.util as u; "
             "print([m for m in ('boto3', 'botocore', 'psycopg', 'psycopg_pool') if u.find_spec(m)])")
    assert _run(str(built.venv / "bin" / "python"), "-c", probe).strip() == "[]"


def test_version_flag_prints_the_installed_version(built: Built) -> None:
    result = built.command("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ingest {ingest.__version__}"
    assert built.wheel.name.startswith(f"ingest-{ingest.__version__}-")


@pytest.mark.parametrize(("flags", "extra"), [
    (["--storage", "s3"], "ingest[s3]"),
    (["--catalog-url", "postgresql://ingest@127.0.0.1:1/ingest"], "ingest[postgres]"),
])
def test_a_backend_without_its_extra_is_a_one_line_error_naming_it(
        built: Built, tmp_path: Path, flags: list[str], extra: str) -> None:
    result = built.command("serve", "--data-dir", str(tmp_path), "--port", str(free_port()), *flags)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert extra in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def light_server(built: Built, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(built.venv / "bin" / "ingest"), "serve", "--data-dir", str(tmp_path / "data"),
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(up, timeout=30), "the light install's server did not start"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()


def test_light_install_serves_the_page_its_static_files_and_uploads(light_server: str) -> None:
    page = httpx.get(light_server + "/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    for path in STATIC.rglob("*"):
        if path.is_file() and path.name != "index.html":
            served = httpx.get(f"{light_server}/static/{path.relative_to(STATIC).as_posix()}")
            assert served.status_code == 200, path
            assert served.content == path.read_bytes(), path
    created = httpx.put(light_server + "/uploads/hello.txt", content=b"hello",
                        headers={"content-type": "application/octet-stream"})
    assert created.status_code == 201
    assert created.json()["files"][0]["sha256"] == \
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_a_server_on_the_defaults_never_imports_boto3_or_psycopg(tmp_path: Path) -> None:
    """In the full (test) install too: the default path leaves the optional backends unloaded."""
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ingest.cli import build_parser\n"
        "from ingest.app import create_app\n"
        "from ingest.config import Settings\n"
        f"create_app(Settings(data_dir=Path({str(tmp_path)!r})))\n"
        "build_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'psycopg', 'psycopg_pool')))\n"
    )
    assert _run(sys.executable, "-c", probe).strip() == "[]"
