"""ingest behind nginx run from the shipped deploy/nginx/ingest.conf (`python -m` this module).

    python -m benchmarks.contenders.proxied --port P --prefix DIR [--buffering on|off] -- INGEST_ARGV...

Starts ingest (INGEST_ARGV, which must listen on the port given by `{upstream_port}` in it)
as a child, writes nginx's configuration under DIR, then replaces itself with nginx in front
of it. nginx's master is thus the process the harness started, and ingest and nginx's worker
are its children: one process tree, stopped together, whose CPU, peak RSS and bytes written
are those of nginx and ingest together. `--buffering on` sets nginx's default
`proxy_request_buffering on` (the whole body written to client_body_temp before ingest sees
a byte) instead of the shipped `off`; everything else is the shipped file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.nginx_proxy import find_nginx, free_port, nginx_argv, write_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="where nginx listens")
    parser.add_argument("--prefix", type=Path, required=True, help="nginx's config, logs and temp files")
    parser.add_argument("--buffering", choices=("on", "off"), default="off",
                        help="proxy_request_buffering (the shipped config: off)")
    parser.add_argument("--files-dir", type=Path, default=None,
                        help="the app's <data dir>/files, served by the internal X-Accel-Redirect location")
    parser.add_argument("upstream", nargs=argparse.REMAINDER, help="-- then the app's argv")
    args = parser.parse_args(argv)
    upstream = args.upstream[1:] if args.upstream[:1] == ["--"] else args.upstream
    nginx = find_nginx()
    if nginx is None or not upstream:
        parser.error("needs nginx installed and the app's argv after --")
    upstream_port = free_port()
    subprocess.Popen([part.replace("{upstream_port}", str(upstream_port)) for part in upstream])
    args.prefix.mkdir(parents=True, exist_ok=True)
    overrides = {"proxy_request_buffering": "on"} if args.buffering == "on" else None
    # As root, workers would switch to "nobody" and could not write the temp directories
    # (under the run's work dir, so the measured filesystem is the stored files' one).
    write_config(args.prefix, upstream_port, args.port, overrides=overrides,
                 user="root" if os.geteuid() == 0 else None, files_dir=args.files_dir)
    command = nginx_argv(args.prefix, nginx)
    os.execv(command[0], command)  # ingest stays a child of this pid, now nginx's master


if __name__ == "__main__":
    sys.exit(main())
