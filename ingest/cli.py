"""`ingest serve | upload | ls | rm | link`: the command line.

`serve` turns flags into Settings (flags > INGEST_* variables > defaults) and hands them to
uvicorn through the environment, so worker processes rebuild the very same Settings.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.config import Settings, env_name, format_value, parse_value

if TYPE_CHECKING:
    import httpx  # imported by the client commands only: `serve` never loads it

READ_SIZE = 1024 * 1024
# Longer than any proxy's upstream keep-alive (deploy/nginx/ingest.conf: 60 s), so the proxy
# closes idle connections first and never reuses one uvicorn is closing (intermittent 502s).
KEEP_ALIVE_TIMEOUT = 75  # seconds; uvicorn's default is 5


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (OSError, ValueError) as error:
        print(f"ingest: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        client_library = sys.modules.get("httpx")  # loaded only if a client command ran
        if client_library is None or not isinstance(error, client_library.HTTPError):
            raise
        print(f"ingest: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server")
    defaults = Settings()
    for setting in fields(Settings):
        flag = "--" + setting.name.replace("_", "-")
        help_text = (f"{setting.metadata['help']} "
                     f"(env {env_name(setting.name)}, default {format_value(getattr(defaults, setting.name))!r})")
        if setting.type == "bool":
            serve.add_argument(flag, dest=setting.name, default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
        else:
            serve.add_argument(flag, dest=setting.name, default=None, metavar=setting.name.upper(),
                               type=functools.partial(parse_value, setting), help=help_text)
    serve.set_defaults(run=serve_command)

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--url", default=os.environ.get("INGEST_URL", "http://127.0.0.1:8000"),
                        help="server base URL (env INGEST_URL)")
    client.add_argument("--token", default=os.environ.get("INGEST_TOKEN"),
                        help="bearer token (env INGEST_TOKEN)")

    upload = commands.add_parser("upload", parents=[client], help="upload files, verify sha256")
    upload.add_argument("files", nargs="+", type=Path, metavar="FILE")
    upload.add_argument("--quiet", action="store_true", help="no progress bar")
    upload.add_argument("--resumable", action="store_true",
                        help="upload with tus; run again after an interruption to resume")
    upload.set_defaults(run=upload_command)

    listing = commands.add_parser("ls", parents=[client], help="list stored files")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(run=ls_command)

    remove = commands.add_parser("rm", parents=[client], help="delete stored files")
    remove.add_argument("ids", nargs="+", metavar="ID")
    remove.set_defaults(run=rm_command)

    from ingest.link_cli import add_link_commands

    add_link_commands(commands, client)
    return parser


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from ingest.accesslog import log_config
    from ingest.protocol import HeaderDeadlineProtocol

    overrides = {s.name: getattr(args, s.name) for s in fields(Settings)}
    settings = Settings.from_env(**overrides)
    os.environ.update(settings.to_env())
    with _metrics_across_workers(settings):
        uvicorn.run(
            "ingest.app:create_app", factory=True, host=settings.host, port=settings.port,
            workers=settings.workers, proxy_headers=settings.proxy_headers,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            loop="uvloop", http=HeaderDeadlineProtocol, log_level="info",
            timeout_graceful_shutdown=settings.shutdown_grace,
            log_config=log_config(settings.log_format),
            # Our access log (ingest.accesslog) replaces uvicorn's when it is on.
            access_log=not settings.access_log,
            timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        )
    return 0


@contextlib.contextmanager
def _metrics_across_workers(settings: Settings) -> Iterator[None]:
    """With several workers, prometheus-client's multiprocess mode: a directory every worker
    writes its values to (set before any worker imports prometheus-client), removed at exit;
    a separate metrics port is then served here, from all workers' files."""
    from ingest.metrics import MULTIPROC_ENV

    if settings.workers <= 1 or not settings.metrics or os.environ.get(MULTIPROC_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="ingest-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    server = None
    try:
        if settings.metrics_port:
            from prometheus_client import start_http_server

            from ingest.metrics import multiprocess_registry

            server, _thread = start_http_server(settings.metrics_port, addr=settings.host,
                                                registry=multiprocess_registry())
        yield
    finally:
        if server is not None:
            server.shutdown()
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def _client(args: argparse.Namespace) -> httpx.Client:
    import httpx

    headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    return httpx.Client(base_url=args.url, headers=headers,
                        timeout=httpx.Timeout(60.0, read=None, write=None))


def upload_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.resumable:
        return resumable_upload_command(args)
    failures = 0
    with _client(args) as client:
        for path in args.files:
            size = path.stat().st_size
            local_hash = hashlib.sha256()
            with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=path.name, disable=args.quiet, file=sys.stderr) as progress:
                def chunks(progress: Any = progress, local_hash: Any = local_hash,
                           path: Path = path) -> Iterator[bytes]:
                    with path.open("rb") as source:
                        while block := source.read(READ_SIZE):
                            local_hash.update(block)
                            progress.update(len(block))
                            yield block

                response = client.put(
                    "/uploads/" + _quote_segment(path.name), content=chunks(),
                    headers={"content-length": str(size),
                             "content-type": "application/octet-stream"})
            if response.status_code != 201:
                failures += 1
                print(f"{path}: {_error_text(response)}", file=sys.stderr)
                continue
            stored = response.json()["files"][0]
            if stored["sha256"] != local_hash.hexdigest():
                failures += 1
                print(f"{path}: server stored sha256 {stored['sha256']}, local file has "
                      f"{local_hash.hexdigest()}", file=sys.stderr)
                continue
            print(f"{stored['id']}  {stored['sha256']}  {stored['size']}  {path}")
    return 1 if failures else 0


def resumable_upload_command(args: argparse.Namespace) -> int:
    import httpx
    from tqdm import tqdm

    from ingest.tus.client import ResumableUpload, TusError, UploadUrls, state_path

    failures = 0
    urls = UploadUrls(state_path())
    with _client(args) as client:
        for path in args.files:
            with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=path.name, disable=args.quiet, file=sys.stderr) as progress:
                try:
                    stored = ResumableUpload(client, path, urls=urls, progress=progress).run()
                except (TusError, httpx.TransportError) as error:
                    failures += 1
                    print(f"{path}: {error} (run the command again to resume)", file=sys.stderr)
                    continue
            print(f"{stored['id']}  {stored['sha256']}  {stored['size']}  {path}")
    return 1 if failures else 0


def ls_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.get("/uploads", params={"limit": args.limit})
        if response.status_code != 200:
            print(_error_text(response), file=sys.stderr)
            return 1
        for item in response.json()["items"]:
            print(f"{item['id']}  {item['size']:>14}  {item['created_at']}  {item['filename']}")
    return 0


def rm_command(args: argparse.Namespace) -> int:
    failures = 0
    with _client(args) as client:
        for file_id in args.ids:
            response = client.delete(f"/uploads/{_quote_segment(file_id)}")
            if response.status_code != 204:
                failures += 1
                print(f"{file_id}: {_error_text(response)}", file=sys.stderr)
    return 1 if failures else 0


def _quote_segment(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body['error']}: {body['detail']}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return f"{response.status_code} {response.text[:200]}"
