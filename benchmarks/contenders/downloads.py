"""The download contenders (scenario `download`): one stored file, fetched whole with curl.

`place` puts the input where each server serves it: ingest gets it uploaded (raw PUT, untimed,
through nginx for the proxied one); nginx and bare Starlette get a hard link of it in their
store. Every one serves a file of the same bytes from the same filesystem.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.contenders import Contender, register, uvicorn_command
from benchmarks.contenders.builtin import _granian, _ingest, _ingest_behind_nginx, _ingest_files
from benchmarks.contenders.nginx import nginx_sendfile_command
from benchmarks.inputs import InputFile

DOWNLOAD = ("download",)


def _uploaded_to_ingest(port: int, workdir: Path, source: InputFile) -> str:
    """Store the input in the running ingest with a raw PUT; the path of its content."""
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail-with-body", "-H", "Expect:", "-T", str(source.path),
         "-H", "Content-Type: application/octet-stream", f"http://127.0.0.1:{port}/uploads/bench.bin"],
        capture_output=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise OSError(f"storing the file to download failed: {done.stdout[:300]!r} {done.stderr[:300]!r}")
    try:
        file_id = json.loads(done.stdout)["files"][0]["id"]
    except (ValueError, LookupError, TypeError) as error:  # recorded by the harness as a failed run
        raise OSError(f"storing the file to download gave no file id: {done.stdout[:300]!r}") from error
    return f"/uploads/{file_id}/content"


def _linked_into_store(port: int, workdir: Path, source: InputFile) -> str:
    files = workdir / "store" / "files"
    files.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source.path, files / "bench.bin")
    except OSError:  # another filesystem: a copy, made before timing
        shutil.copyfile(source.path, files / "bench.bin")
    return "/files/bench.bin"


register(Contender(
    name="ingest-download", mode="raw", description="ingest GET /uploads/{id}/content, direct",
    settings="ingest sends the file (1 MiB reads)", launch=_ingest(), stored=_ingest_files,
    health_path="/healthz", place=_uploaded_to_ingest, scenarios=DOWNLOAD))
register(Contender(
    name="ingest-download-nginx", mode="raw",
    description="ingest GET /uploads/{id}/content behind the shipped nginx config, X-Accel-Redirect on "
                "(ingest checks, nginx sends the file)",
    settings="CPU and RSS are nginx's and ingest's together", launch=_ingest_behind_nginx("off", accel_redirect=True),
    stored=_ingest_files, health_path="/healthz", requires=("nginx",), place=_uploaded_to_ingest,
    scenarios=DOWNLOAD))
register(Contender(
    name="nginx-sendfile", mode="raw", description="nginx serving the same file with sendfile on (C, zero-copy)",
    settings="static file, no auth", requires=("nginx",), launch=nginx_sendfile_command,
    stored=lambda workdir: sorted((workdir / "store" / "files").glob("*")), place=_linked_into_store,
    scenarios=DOWNLOAD))
register(Contender(
    name="starlette-fileresponse", mode="raw", description="bare Starlette FileResponse under uvicorn",
    settings="Starlette's defaults (64 KiB reads)",
    launch=lambda launch: uvicorn_command("benchmarks.contenders.starlette_fileresponse:app", launch),
    stored=lambda workdir: sorted((workdir / "store" / "files").glob("*")), place=_linked_into_store,
    scenarios=DOWNLOAD))


if importlib.util.find_spec("granian") is not None:
    register(Contender(
        name="ingest-download-granian", mode="raw",
        description="ingest GET /uploads/{id}/content under granian, which offers http.response.pathsend",
        settings="granian sends the file from its path", launch=_granian(fsync=True), stored=_ingest_files,
        health_path="/healthz", place=_uploaded_to_ingest, scenarios=DOWNLOAD))
