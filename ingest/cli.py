"""`ingest serve | upload | download | ls | rm | create-bucket | link`: the command line.

`serve` turns flags into Settings (flags > INGEST_* variables > defaults) and hands them to
`ingest.server.run.serve`, the one place that starts uvicorn. The other commands are thin
shells over `ingest.client`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from ingest import __version__
from ingest.config import Settings, env_name, format_setting, human_size, parse_value

if TYPE_CHECKING:
    # Imported by the client commands only: `serve` never loads httpx.
    from ingest.client import Client

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (128 + 2)
SIZES_NOTE = ("Sizes take binary units: 64GiB, 512MiB, 16KiB (1 KiB = 1024 bytes; k or KB, M or MB, "
              "G or GB are read as KiB, MiB, GiB) or plain bytes.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("ingest: interrupted", file=sys.stderr)
        return INTERRUPTED
    except (OSError, ValueError) as error:
        print(f"ingest: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        client_library = sys.modules.get("httpx")  # loaded only if a client command ran
        client_errors = sys.modules.get("ingest.client.errors")
        if not ((client_library is not None and isinstance(error, client_library.HTTPError))
                or (client_errors is not None and isinstance(error, client_errors.ClientError))):
            raise
        print(f"ingest: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ingest {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server", epilog=SIZES_NOTE,
                                description="Run the server. Flags override INGEST_* variables. " + SIZES_NOTE)
    _add_setting_flags(serve, [s.name for s in fields(Settings)])
    serve.set_defaults(run=serve_command)

    create_bucket = commands.add_parser(
        "create-bucket", help="create the S3 bucket --storage s3 writes to (INGEST_S3_* settings)")
    _add_setting_flags(create_bucket, [s.name for s in fields(Settings) if s.name.startswith("s3_")])
    create_bucket.set_defaults(run=create_bucket_command)

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--url", default=os.environ.get("INGEST_URL", "http://127.0.0.1:8000"),
                        help="server base URL (env INGEST_URL)")
    client.add_argument("--token", default=os.environ.get("INGEST_TOKEN"),
                        help="bearer token (env INGEST_TOKEN)")

    upload = commands.add_parser(
        "upload", parents=[client], help="upload files, verify sha256",
        description="Upload files. Each file is hashed while it is sent and the sha256 the server "
                    "returns is checked against it; stdout gets 'ID  SHA256  SIZE  FILE' per verified file.")
    upload.add_argument("files", nargs="+", type=Path, metavar="FILE")
    upload.add_argument("--quiet", action="store_true", help="no progress bar, no verification note")
    upload.add_argument("--resumable", action="store_true",
                        help="upload with tus; run the same command again after an interruption to resume")
    upload.set_defaults(run=upload_command)

    download = commands.add_parser(
        "download", parents=[client], help="download a stored file, verify sha256",
        description="Download a stored file. The bytes go to a hidden .part file beside the "
                    "destination; an interrupted download resumes when run again; the sha256 is "
                    "checked against the catalog's before the file takes its name.")
    download.add_argument("file_id", metavar="ID")
    download.add_argument("-o", "--output", type=Path, default=None, metavar="PATH",
                          help="file or directory to write (default: the stored name, here)")
    download.add_argument("--force", action="store_true", help="replace an existing, different file")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(run=download_command)

    listing = commands.add_parser("ls", parents=[client], help="list stored files, newest first")
    listing.add_argument("--limit", type=int, default=None, metavar="N",
                         help="show at most N files (default: all of them, fetched page by page)")
    listing.add_argument("--json", action="store_true", help="print one JSON array of the files' descriptions")
    listing.set_defaults(run=ls_command)

    remove = commands.add_parser("rm", parents=[client], help="delete stored files")
    remove.add_argument("ids", nargs="+", metavar="ID")
    remove.set_defaults(run=rm_command)

    from ingest.links.cli import add_link_commands

    add_link_commands(commands, client)
    return parser


def _add_setting_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """A --flag per setting named, defaulting to None: unset flags leave env and defaults be."""
    defaults = Settings()
    for setting in fields(Settings):
        if setting.name not in names:
            continue
        flag = "--" + setting.name.replace("_", "-")
        default = format_setting(setting, getattr(defaults, setting.name))
        unit = "size, " if setting.metadata.get("size") else ""
        help_text = (f"{setting.metadata['help']} "
                     f"({unit}env {env_name(setting.name)}, default {default or repr(default)})")
        if setting.type == "bool":
            parser.add_argument(flag, dest=setting.name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        else:
            metavar = "SIZE" if setting.metadata.get("size") else setting.name.upper()
            parser.add_argument(flag, dest=setting.name, default=None, metavar=metavar,
                                type=functools.partial(parse_value, setting), help=help_text)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {s.name: getattr(args, s.name) for s in fields(Settings) if hasattr(args, s.name)}
    return Settings.from_env(**overrides)


def serve_command(args: argparse.Namespace) -> int:
    from ingest.backends import check_backends
    from ingest.server.run import serve

    settings = _settings(args)
    check_backends(settings)  # a missing extra, bucket or database: one line, before any worker
    with _metrics_across_workers(settings):
        serve(settings)
    return 0


def create_bucket_command(args: argparse.Namespace) -> int:
    from ingest.backends import s3_client

    settings = _settings(args)
    client = s3_client(settings)
    from ingest.storage.s3 import create_bucket

    created = create_bucket(client, settings.s3_bucket, region=settings.s3_region)
    where = settings.s3_endpoint or "AWS"
    print(f"bucket {settings.s3_bucket!r} {'created' if created else 'already exists'} at {where}")
    return 0


@contextlib.contextmanager
def _metrics_across_workers(settings: Settings) -> Iterator[None]:
    """With several workers, prometheus-client's multiprocess mode: a directory every worker
    writes its values to (set before any worker imports prometheus-client), removed at exit;
    a separate metrics port is then served here, from all workers' files."""
    from ingest.observe.metrics import MULTIPROC_ENV

    if settings.workers <= 1 or not settings.metrics or os.environ.get(MULTIPROC_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="ingest-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    server = None
    try:
        if settings.metrics_port:
            from prometheus_client import start_http_server

            from ingest.observe.metrics import multiprocess_registry

            server, _thread = start_http_server(settings.metrics_port, addr=settings.host,
                                                registry=multiprocess_registry())
        yield
    finally:
        if server is not None:
            server.shutdown()
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def _client(args: argparse.Namespace) -> Client:
    from ingest.client import Client

    return Client(args.url, token=args.token)


@contextlib.contextmanager
def _progress_bar(name: str, total: int | None, quiet: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A tqdm bar on stderr, as a client progress callback `(bytes_done, bytes_total)`."""
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
              disable=quiet, file=sys.stderr) as bar:
        def update(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        yield update


def upload_command(args: argparse.Namespace) -> int:
    import httpx

    from ingest.client import ClientError

    failures = 0
    with _client(args) as client:
        for path in args.files:
            size = path.stat().st_size
            try:
                with _progress_bar(path.name, size, args.quiet) as progress:
                    if args.resumable:
                        stored = client.upload_resumable(path, progress=progress)
                    else:
                        stored = client.upload(path, progress=progress)
            except KeyboardInterrupt:
                # One line, no traceback: what happened to this file and what to do next.
                print("ingest: interrupted; run the same command again to resume" if args.resumable
                      else "ingest: interrupted; nothing was stored", file=sys.stderr)
                return INTERRUPTED
            except (ClientError, httpx.TransportError) as error:
                failures += 1
                again = " (run the command again to resume)" if args.resumable else ""
                print(f"{path}: {error}{again}", file=sys.stderr)
                continue
            if not args.quiet:
                print(f"{path}: stored as {stored.id}, {human_size(stored.size)}; sha256 verified "
                      "against the local file", file=sys.stderr)
            print(f"{stored.id}  {stored.sha256}  {stored.size}  {path}")
    return 1 if failures else 0


def download_command(args: argparse.Namespace) -> int:
    from ingest.client import ClientError

    with _client(args) as client:
        try:
            stored = client.get(args.file_id)
            with _progress_bar(stored.filename, stored.size, args.quiet) as progress:
                written = client.download(args.file_id, args.output, force=args.force, progress=progress)
        except KeyboardInterrupt:
            print("ingest: interrupted; run the same command again to resume", file=sys.stderr)
            return INTERRUPTED
        except ClientError as error:
            print(f"{args.file_id}: {error}", file=sys.stderr)
            return 1
    if not args.quiet:
        print(f"{written}: {human_size(stored.size)}; sha256 verified against the catalog", file=sys.stderr)
    print(written)
    return 0


def ls_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        items = client.list(limit=args.limit)
        if args.json:
            print(json.dumps([dataclasses.asdict(item) for item in items], indent=1))
            return 0
        for item in items:
            print(f"{item.id}  {human_size(item.size):>10}  {item.created_at}  {item.filename}")
    return 0


def rm_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return each_id(args.ids, client.delete)


def each_id(ids: list[str], action: Callable[[str], object], done: str | None = None) -> int:
    """`action` on every id in turn, one failure not stopping the rest: each failure on stderr
    as `<id>: <error>`, `<id> <done>` on stdout after each success when `done` is given; the
    exit status is 1 if any failed."""
    from ingest.client import ClientError

    failures = 0
    for item in ids:
        try:
            action(item)
        except ClientError as error:
            failures += 1
            print(f"{item}: {error}", file=sys.stderr)
        else:
            if done:
                print(f"{item} {done}")
    return 1 if failures else 0

