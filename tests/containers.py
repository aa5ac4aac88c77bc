"""podman for the container tests: the base images made locally, the app image built from the
repository's Dockerfile, and docker-compose.yml brought up with podman-compose.

No image can be pulled here, so the bases are minimal Debian trees from mmdebstrap, imported
with `podman import`: one with python3 + venv (the Dockerfile's `BASE`), one with nginx
(compose's `nginx` service). They are made at most once per machine: an image already in
podman's store under the same tag and recipe label is reused, so a session builds each base
at most once and later sessions none. The app image is built in every session.

podman runs with deploy/podman/containers.conf (runc, cgroupfs, no default ulimits), the file
README's podman commands use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "tests" / "compose.test.yml"]
SUITE = "bookworm"
# Documentation, manuals and translations are left out of the bases: a smaller image, same programs.
_SLIM = ["--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
         "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright"]
BASES = {
    # tag: (mmdebstrap arguments, podman import --change instructions)
    "localhost/ingest-base:bookworm": (
        ["--include=python3,python3-venv,ca-certificates,libmagic1"], []),
    "localhost/ingest-nginx:bookworm": (
        ["--include=nginx",
         # Debian's default site listens on port 80 of the host's network; logs go to the
         # container's output, as in the official nginx image.
         "--customize-hook=rm -f \"$1/etc/nginx/sites-enabled/default\"; "
         "ln -sf /dev/stdout \"$1/var/log/nginx/access.log\"; ln -sf /dev/stderr \"$1/var/log/nginx/error.log\""],
        ['CMD ["nginx", "-g", "daemon off;"]', "STOPSIGNAL SIGQUIT"]),
}
RECIPE_LABEL = "org.ingest.recipe"


def podman_env() -> dict[str, str]:
    """This environment for podman and podman-compose, less any INGEST_* setting: compose
    substitutes those into the deployment, which must run on what the test gives it."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("INGEST_")}
    return {**inherited, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                            env=podman_env(), check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _recipe(tag: str) -> str:
    arguments, changes = BASES[tag]
    return hashlib.sha256(json.dumps([SUITE, _SLIM, arguments, changes]).encode()).hexdigest()[:16]


def base_image(tag: str) -> str:
    """`tag`, made with mmdebstrap and imported unless podman holds it with this recipe."""
    require_tool("podman")
    require_tool("mmdebstrap")
    recipe = _recipe(tag)
    found = podman("image", "inspect", "--format", f'{{{{index .Labels "{RECIPE_LABEL}"}}}}', tag,
                   check=False)
    if found.returncode == 0 and found.stdout.strip() == recipe:
        return tag
    arguments, changes = BASES[tag]
    with tempfile.TemporaryDirectory(prefix="ingest-base-") as scratch:
        tarball = Path(scratch) / "rootfs.tar"
        result = subprocess.run(["mmdebstrap", "--variant=minbase", "--quiet", *_SLIM, *arguments,
                                 SUITE, str(tarball)], capture_output=True, text=True, timeout=600,
                                check=False)
        assert result.returncode == 0, f"mmdebstrap failed:\n{result.stderr[-3000:]}"
        change_args = [f"--change={change}" for change in [*changes, f"LABEL {RECIPE_LABEL}={recipe}"]]
        podman("import", *change_args, str(tarball), tag, timeout=300)
    return tag


def build_mounts() -> list[str]:
    """`-v SRC:SRC:ro` for the host's CA certificates and pip's configuration files (and the
    files they name), so pip inside the build reaches the package index as it does here."""
    paths = {Path(p) for p in (ssl.get_default_verify_paths().capath, ssl.get_default_verify_paths().cafile)
             if p}
    debug = subprocess.run([sys.executable, "-m", "pip", "config", "debug"], capture_output=True, text=True,
                           timeout=60, check=False).stdout
    for line in debug.splitlines():
        listed = re.match(r"\s+(/\S+), exists: True$", line)
        if listed:
            paths.add(Path(listed[1]))
            continue
        value = re.match(r"\s+global\.[\w-]+: (.+)$", line)
        if value:
            for word in value[1].split():
                candidate = Path(word.removeprefix("file://"))
                if candidate.is_absolute():
                    # A local index (PEP 503) links to its files with relative URLs
                    # (../../files/...): the directory holding `simple/` goes in whole.
                    paths.add(candidate.parent if candidate.name == "simple" else candidate)
    existing = sorted(p.resolve() for p in paths if p.exists())
    # A file inside a directory already mounted needs no mount of its own.
    kept = [p for p in existing if not any(p != other and p.is_relative_to(other) for other in existing)]
    return [f"--volume={p}:{p}:ro" for p in kept]


@dataclass
class BuiltImage:
    tag: str
    seconds: float
    size_bytes: int


def build_app_image(tag: str, base: str, *, extras: str = "") -> BuiltImage:
    """The repository's Dockerfile, as README's podman command builds it, on the local base."""
    started = time.monotonic()
    podman("build", "--format=docker", "--network=host", f"--build-arg=BASE={base}",
           f"--build-arg=EXTRAS={extras}", *build_mounts(), f"--tag={tag}", str(ROOT), timeout=900)
    seconds = time.monotonic() - started
    size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    return BuiltImage(tag=tag, seconds=seconds, size_bytes=size)


@dataclass
class Deployment:
    """docker-compose.yml + tests/compose.test.yml brought up with podman-compose."""
    project: str
    env: dict[str, str]
    app_port: int
    nginx_port: int
    files: tuple[Path, ...] = tuple(COMPOSE_FILES)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = [f"--file={path}" for path in self.files]
        command = [sys.executable, "-m", "podman_compose", *files, f"--project-name={self.project}", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                                env=self.env, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def container(self, service: str) -> str:
        """The name podman-compose gives the one container of `service`."""
        return f"{self.project}_{service}_1"

    def volume_path(self, volume: str = "ingest-data") -> Path:
        """Where the named volume's files are on the host (rootful podman's local driver)."""
        mountpoint = podman("volume", "inspect", "--format", "{{.Mountpoint}}",
                            f"{self.project}_{volume}").stdout.strip()
        return Path(mountpoint)
