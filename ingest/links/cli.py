"""`ingest link create | ls | revoke`: upload links, through the server's `/links` API (admin
token), so every node sharing the catalog sees the same links at once."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_link_commands(commands: Any, client: argparse.ArgumentParser) -> None:
    """Register the `link` group; `client` is the parent parser holding --url and --token."""
    link = commands.add_parser("link", help="create, list and revoke upload links (admin token)")
    actions = link.add_subparsers(required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[client], help="create a link; prints its URL once")
    create.add_argument("--expires", help="lifetime: 90s, 30m, 12h, 7d (default: never)")
    create.add_argument("--max-size", help="bytes over every upload with it: 20GiB (default: no limit)")
    create.add_argument("--max-files", type=int, help="files over every upload with it (default: no limit)")
    create.add_argument("--accept", help="media types the files' bytes must be: image/*,application/pdf")
    create.add_argument("--label", default="", help="shown to whoever opens the link")
    create.add_argument("--single-use", action="store_true", help="spent by its first upload")
    create.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    create.set_defaults(run=create_command)

    listing = actions.add_parser("ls", parents=[client], help="list links, their state and use")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=ls_command)

    revoke = actions.add_parser("revoke", parents=[client], help="revoke links: they stop working at once")
    revoke.add_argument("ids", nargs="+", metavar="ID")
    revoke.set_defaults(run=revoke_command)


def create_command(args: argparse.Namespace) -> int:
    from ingest.cli import _client

    options: dict[str, Any] = {"label": args.label, "single_use": args.single_use}
    for key in ("expires", "max_size", "max_files", "accept"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    with _client(args) as client:
        created = client.create_link(**options)
    if args.json:
        print(json.dumps(created, indent=2))
    else:
        print(created["url"])
        print(f"link {created['link']['id']}: the URL is shown only now; `ingest link revoke "
              f"{created['link']['id']}` stops it", file=sys.stderr)
    return 0


def _limit(used: int, limit: int | None, unit: str = "") -> str:
    return f"{used}{unit}/{'-' if limit is None else f'{limit}{unit}'}"


def ls_command(args: argparse.Namespace) -> int:
    from ingest.cli import _client

    with _client(args) as client:
        items = client.links()
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for link in items:
        print(f"{link['id']}  {link['state']:8}  files {_limit(link['files_used'], link['max_files'])}  "
              f"bytes {_limit(link['bytes_used'], link['max_size'])}  expires {link['expires_at'] or 'never'}  "
              f"{link['label']}")
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    from ingest.cli import _client, each_id

    with _client(args) as client:
        return each_id(args.ids, client.revoke_link, done="revoked")
