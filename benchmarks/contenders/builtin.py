"""The built-in contenders (see README "Benchmarks" for what each stands for)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.contenders import (
    Contender,
    Launch,
    ServerCommand,
    _files_under,
    register,
    uvicorn_command,
)
from benchmarks.contenders.nginx import nginx_dav_command

# --- ingest ----------------------------------------------------------------------------------


def _ingest(*extra: str, module: str = "ingest") -> Callable[[Launch], ServerCommand]:
    def launch_ingest(launch: Launch) -> ServerCommand:
        argv = [sys.executable, "-m", module, "serve", "--host", "127.0.0.1", "--port", str(launch.port),
                "--data-dir", str(launch.workdir / "data"), *extra]
        return ServerCommand(argv)
    return launch_ingest


ACCEL_REDIRECT_PREFIX = "/_ingest_files/"  # the internal location of deploy/nginx/ingest.conf


def _ingest_behind_nginx(buffering: str, *, accel_redirect: bool = False) -> Callable[[Launch], ServerCommand]:
    """ingest with its defaults behind nginx on the harness's port (see contenders/proxied.py);
    `accel_redirect`: downloads answered with X-Accel-Redirect, nginx sending the bytes."""
    def launch_proxied(launch: Launch) -> ServerCommand:
        data_dir = launch.workdir / "data"
        ingest = [sys.executable, "-m", "ingest", "serve", "--host", "127.0.0.1", "--port", "{upstream_port}",
                  "--data-dir", str(data_dir), "--proxy-headers"]
        if accel_redirect:
            ingest += ["--accel-redirect-prefix", ACCEL_REDIRECT_PREFIX]
        argv = [sys.executable, "-m", "benchmarks.contenders.proxied", "--port", str(launch.port),
                "--prefix", str(launch.workdir / "nginx"), "--buffering", buffering,
                "--files-dir", str(data_dir / "files"), "--", *ingest]
        return ServerCommand(argv)
    return launch_proxied


def _ingest_files(workdir: Path) -> list[Path]:
    return _files_under(workdir / "data" / "files")


for _fsync in (True, False):
    _suffix = "" if _fsync else "-nofsync"
    _flags = () if _fsync else ("--no-fsync",)
    _setting = f"sha256 on, fsync {'on' if _fsync else 'off'}"
    register(Contender(
        name=f"ingest-multipart{_suffix}", mode="multipart", url_path="/uploads",
        description="ingest POST /uploads (multipart/form-data)", settings=_setting,
        launch=_ingest(*_flags), stored=_ingest_files, health_path="/healthz",
        # With fsync on (ingest's default), also the direct reference of the proxy scenario;
        # its parse budget refuses the adversarial body by design, so only the stall is
        # measured for it (the parse rate is ingest-multipart-nobudget's).
        scenarios=("single", "concurrent", "adversarial-stall", "proxy") if _fsync else ("single", "concurrent")))
    register(Contender(
        name=f"ingest-put{_suffix}", mode="raw", url_path="/uploads/bench-{n}.bin", method="PUT",
        description="ingest PUT /uploads/{name} (raw body)", settings=_setting,
        launch=_ingest(*_flags), stored=_ingest_files, health_path="/healthz"))

register(Contender(
    name="ingest-multipart-nobudget", mode="multipart", url_path="/uploads",
    description="ingest POST /uploads with the multipart parse budget off (--multipart-min-parse-rate 0): "
                "what parsing a CRLF-dense body costs, and the stall the budget prevents",
    settings="sha256 on, fsync on, parse budget off",
    launch=_ingest("--multipart-min-parse-rate", "0"), stored=_ingest_files, health_path="/healthz",
    scenarios=("adversarial", "adversarial-stall")))
register(Contender(
    name="ingest-multipart-nohash", mode="multipart", url_path="/uploads",
    description="ingest POST /uploads with SHA-256 replaced by a no-op: exists only to measure what "
                "hashing costs (ingest itself always hashes; see contenders/ingest_nohash.py)",
    settings="sha256 OFF, fsync on; the stored bytes are still checked by reading them back",
    launch=_ingest(module="benchmarks.contenders.ingest_nohash"), stored=_ingest_files, health_path="/healthz",
    scenarios=("single",)))
for _buffering, _what in (("off", "the shipped deploy/nginx/ingest.conf (proxy_request_buffering off)"),
                          ("on", "the shipped config with nginx's default proxy_request_buffering on")):
    register(Contender(
        name="ingest-multipart-nginx" + ("-buffered" if _buffering == "on" else ""), mode="multipart",
        url_path="/uploads", description=f"ingest POST /uploads behind nginx, {_what}",
        settings="sha256 on, fsync on; CPU, RSS and disk are nginx's and ingest's together",
        launch=_ingest_behind_nginx(_buffering), stored=_ingest_files, health_path="/healthz",
        requires=("nginx",), scenarios=("proxy",)))

register(Contender(
    name="ingest-tus", mode="tus", url_path="/files/",
    description="ingest tus: a creation POST, then one PATCH of the whole file (resumable, one stream)",
    settings="sha256 on, fsync on", launch=_ingest(), stored=_ingest_files, health_path="/healthz",
    scenarios=("single",)))

# --- the usual Python ways -------------------------------------------------------------------

register(Contender(
    name="starlette-form", mode="multipart",
    description="Starlette request.form() + copy of the UploadFile in 1 MiB chunks",
    settings="no hashing, no fsync; python-multipart spools to the temp dir",
    launch=lambda launch: uvicorn_command("benchmarks.contenders.starlette_form:app", launch)))
register(Contender(
    name="fastapi-def", mode="multipart", url_path="/upload-def",
    description="FastAPI def endpoint, UploadFile + shutil.copyfileobj (the UploadFile baseline)",
    settings="no hashing, no fsync; python-multipart spools to the temp dir",
    launch=lambda launch: uvicorn_command("benchmarks.contenders.fastapi_uploadfile:app", launch)))
register(Contender(
    name="fastapi-async", mode="multipart", url_path="/upload-async",
    description="FastAPI async def endpoint, await UploadFile.read(1 MiB) loop",
    settings="no hashing, no fsync; python-multipart spools to the temp dir",
    launch=lambda launch: uvicorn_command("benchmarks.contenders.fastapi_uploadfile:app", launch)))
register(Contender(
    name="aiohttp-multipart", mode="multipart",
    description="aiohttp MultipartReader, read_chunk(1 MiB) to a file, default asyncio loop",
    settings="no hashing, no fsync",
    launch=lambda launch: ServerCommand(
        [sys.executable, "-m", "benchmarks.contenders.aiohttp_multipart", "--port", str(launch.port)],
        {"BENCH_STORE_DIR": str(launch.store_dir)})))

register(Contender(
    name="sfd-naive", mode="multipart",
    description="naive streaming-form-data endpoint: fed from request.stream(), a target os.write-ing "
                "each chunk, on the loop, nothing else (no guards, no limits)",
    settings="no hashing, no fsync",
    launch=lambda launch: uvicorn_command("benchmarks.contenders.sfd_naive:app", launch),
    scenarios=("single",)))
register(Contender(
    name="sfd-naive-sha256", mode="multipart",
    description="the same with SHA-256 of each chunk inline: the unguarded reference ingest must beat",
    settings="sha256 on, no fsync",
    launch=lambda launch: uvicorn_command("benchmarks.contenders.sfd_naive:app_sha256", launch),
    scenarios=("single",)))

# --- bounds ----------------------------------------------------------------------------------

register(Contender(
    name="starlette-stream", mode="raw", method="PUT",
    description="bare Starlette request.stream() written to a file, no parsing (Python bound)",
    settings="no hashing, no fsync, default malloc",
    launch=lambda launch: uvicorn_command("benchmarks.contenders.starlette_stream:app", launch)))
register(Contender(
    name="starlette-stream-tuned", mode="raw", method="PUT",
    description="the same, with ingest's malloc tuning (Python bound under ingest's settings)",
    settings="no hashing, no fsync, malloc tuned as ingest",
    launch=lambda launch: uvicorn_command("benchmarks.contenders.starlette_stream:app_tuned", launch,
                                          factory=True)))
register(Contender(
    name="receive-only", mode="raw", method="PUT",
    description="uvicorn + Starlette reading the body and discarding it, malloc tuned as ingest "
                "(the receive-only bound of the CPU decomposition)",
    settings="nothing stored; answers the byte count, which is checked", discards=True,
    launch=lambda launch: uvicorn_command("benchmarks.contenders.receive_only:app_tuned", launch, factory=True),
    scenarios=("single",)))
register(Contender(
    name="sha256-alone", mode="raw", bound="sha256",
    description="SHA-256 (hashlib) over the file size from a 1 MiB block in memory, in a process of its own",
    settings="CPU of the loop only", scenarios=("single",)))
register(Contender(
    name="write-behind-alone", mode="raw", bound="write-behind",
    description="the file size written in 1 MiB writes with write-behind (sync_file_range per 8 MiB window, "
                "then POSIX_FADV_DONTNEED), then fsync, in a process of its own",
    settings="fsync on; CPU of the loop and the fsync only", scenarios=("single",)))
register(Contender(
    name="nginx-dav", mode="raw", method="PUT", url_path="/files/bench-{n}.bin",
    description="nginx dav_methods PUT (C reference), default client_body_buffer_size (16k)",
    settings="no hashing, no fsync", requires=("nginx",),
    launch=lambda launch: nginx_dav_command(launch, body_buffer=None),
    stored=lambda workdir: _files_under(workdir / "store" / "files")))
register(Contender(
    name="nginx-dav-1m", mode="raw", method="PUT", url_path="/files/bench-{n}.bin",
    description="nginx dav_methods PUT with client_body_buffer_size 1m",
    settings="no hashing, no fsync", requires=("nginx",),
    launch=lambda launch: nginx_dav_command(launch, body_buffer="1m"),
    stored=lambda workdir: _files_under(workdir / "store" / "files")))
register(Contender(
    name="dd", mode="raw", description="dd bs=1M of the input to the same filesystem (disk bound)",
    settings="no fsync (page cache), as the servers",
    local=lambda source, target: ["dd", f"if={source}", f"of={target}", "bs=1M", "status=none"],
    stored=lambda workdir: _files_under(workdir / "store"), requires=("dd",)))

# --- ingest under granian (a Rust HTTP server), when installed: is it worth offering? -------

def _granian(fsync: bool) -> Callable[[Launch], ServerCommand]:
    def launch_granian(launch: Launch) -> ServerCommand:
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                "--port", str(launch.port), "--workers", "1", "--loop", "uvloop", "--no-ws",
                "--log-level", "warning", "ingest.server.worker:create_app"]
        return ServerCommand(argv, {"INGEST_DATA_DIR": str(launch.workdir / "data"),
                                    "INGEST_FSYNC": "true" if fsync else "false"})
    return launch_granian


if importlib.util.find_spec("granian") is not None:
    for _fsync in (True, False):
        register(Contender(
            name="ingest-multipart-granian" + ("" if _fsync else "-nofsync"), mode="multipart", url_path="/uploads",
            description="ingest POST /uploads under granian (ASGI, uvloop, one worker) instead of uvicorn",
            settings=f"sha256 on, fsync {'on' if _fsync else 'off'}", health_path="/healthz", stored=_ingest_files,
            launch=_granian(_fsync)))
