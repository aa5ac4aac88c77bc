"""A real nginx, run from the shipped deploy/nginx/ingest.conf, in front of a local upstream.

Used by the benchmark suite's `proxy` scenario (benchmarks/contenders/proxied.py), by
tests/test_nginx.py and by deploy/measure_proxy.py; it lives here, not in tests/, because the
benchmarks must run without the test package. nginx runs as an ordinary foreground process
(`nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`) with its own pid file, logs and temp
directories under DIR, on loopback ports. The generated nginx.conf only sets those paths and
includes the shipped file unchanged; the site snippets it includes (ingest-site/upstream.conf,
ingest-site/server.conf, ingest-site/files.conf) are generated for the ports and the app's
files directory (the internal location X-Accel-Redirect downloads are served from). `overrides` replaces the value of
directives of the shipped file (each must occur exactly once), for experiments such as
`{"proxy_request_buffering": "on"}`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG_PATH = REPO / "deploy" / "nginx" / "ingest.conf"
SITE_DIR = "ingest-site"  # the relative include path used by ingest.conf

# nginx logs these at level `warn` whenever it spools a body to disk
# (ngx_http_request_body.c, ngx_event_pipe.c).
REQUEST_SPOOLED = "a client request body is buffered to a temporary file"
RESPONSE_SPOOLED = "an upstream response is buffered to a temporary file"


def find_nginx() -> str | None:
    """The nginx binary; Debian installs it in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Nginx:
    url: str                  # http://127.0.0.1:<port>
    port: int
    tls_url: str | None       # https://127.0.0.1:<tls_port> with a self-signed certificate, if asked for
    prefix: Path              # pid, logs, temp directories and generated configuration
    process: subprocess.Popen[bytes]

    @property
    def client_body_temp(self) -> Path:
        return self.prefix / "client_body_temp"

    @property
    def proxy_temp(self) -> Path:
        return self.prefix / "proxy_temp"

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = []
        for stat_path in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                # Field 4 of /proc/PID/stat is the parent pid; the name (field 2) may hold spaces.
                fields = stat_path.read_text().rpartition(")")[2].split()
                if int(fields[1]) == self.process.pid:
                    children.append(int(stat_path.parent.name))
        return children

    def spooled_files(self) -> list[str]:
        """Files nginx holds in its temp directories now, listed or open (it unlinks its
        non-persistent temp files right after creating them, so a listing alone sees nothing)."""
        temp_dirs = (str(self.client_body_temp), str(self.proxy_temp))
        found = [str(p) for d in (self.client_body_temp, self.proxy_temp) for p in d.rglob("*") if p.is_file()]
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith(temp_dirs):
                            found.append(target)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish requests in flight
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


def render_config(overrides: Mapping[str, str]) -> str:
    """The shipped configuration with the given directives' values replaced."""
    text = CONFIG_PATH.read_text()
    for directive, value in overrides.items():
        pattern = re.compile(rf"^(\s*{re.escape(directive)})\s+[^;]*;", re.MULTILINE)
        text, count = pattern.subn(lambda m, v=value: f"{m.group(1)} {v};", text)  # type: ignore[misc]
        if count != 1:
            raise ValueError(f"{directive} occurs {count} times in {CONFIG_PATH}, not once")
    return text


def write_config(prefix: Path, upstream_port: int, port: int, *, upstream_host: str = "127.0.0.1",
                 tls_port: int | None = None, overrides: Mapping[str, str] | None = None,
                 user: str | None = None, files_dir: Path | None = None) -> Path:
    """Write nginx.conf and the site snippets under `prefix` (which must exist); returns nginx.conf.

    `files_dir`: the app's <data dir>/files, aliased by the internal download location (None:
    an empty directory under `prefix`, for apps that send downloads themselves).
    `user`: the `user` directive, for a master running as root whose workers must write
    temp directories an unprivileged user cannot reach (None: nginx's default).
    """
    site = prefix / SITE_DIR
    site.mkdir(exist_ok=True)
    (site / "upstream.conf").write_text(f"server {upstream_host}:{upstream_port};\n")
    server_lines = [f"listen 127.0.0.1:{port};", "server_name _;"]
    if tls_port is not None:
        _self_signed_certificate(prefix)
        server_lines += [f"listen 127.0.0.1:{tls_port} ssl;", f"ssl_certificate {prefix}/cert.pem;",
                         f"ssl_certificate_key {prefix}/key.pem;"]
    (site / "server.conf").write_text("\n".join(server_lines) + "\n")
    if files_dir is None:
        files_dir = prefix / "no-files"
        files_dir.mkdir(exist_ok=True)
    (site / "files.conf").write_text(f"alias {files_dir.resolve()}/;\n")

    included = CONFIG_PATH
    if overrides:
        included = prefix / "ingest.conf"
        included.write_text(render_config(overrides))
    temp_paths = "".join(f"    {kind}_temp_path {prefix}/{kind}_temp;\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = prefix / "nginx.conf"
    user_line = f"user {user};\n" if user else ""
    config.write_text(
        f"{user_line}"
        f"worker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        f"events {{ worker_connections 512; }}\n"
        f"http {{\n"
        f"    access_log {prefix}/access.log;\n"
        f"{temp_paths}"
        f"    include {included};\n"
        f"}}\n")
    return config


def nginx_argv(prefix: Path, nginx: str = "nginx") -> list[str]:
    """The command running nginx in the foreground from `write_config`'s files."""
    return [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]


def start_nginx(upstream_port: int, *, upstream_host: str = "127.0.0.1", tls: bool = False,
                overrides: Mapping[str, str] | None = None, nginx: str = "nginx",
                files_dir: Path | None = None) -> Nginx:
    """Start nginx from the shipped config in front of `upstream_host:upstream_port`."""
    # Outside pytest's 0700 tmp dirs: nginx's workers drop to an unprivileged user when the
    # master runs as root, and must reach the temp directories.
    prefix = Path(tempfile.mkdtemp(prefix="ingest-nginx-"))
    prefix.chmod(0o755)
    port = free_port()
    tls_port = free_port() if tls else None
    write_config(prefix, upstream_port, port, upstream_host=upstream_host, tls_port=tls_port, overrides=overrides,
                 files_dir=files_dir)
    tls_url = f"https://127.0.0.1:{tls_port}" if tls_port is not None else None
    with (prefix / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(nginx_argv(prefix, nginx), stdout=subprocess.DEVNULL, stderr=stderr)
    server = Nginx(f"http://127.0.0.1:{port}", port, tls_url, prefix, process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = (prefix / "stderr.log").read_text(errors="replace") + server.error_log()
            shutil.rmtree(prefix, ignore_errors=True)
            raise RuntimeError(f"nginx exited at start:\n{output}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError("nginx did not start listening")


def _self_signed_certificate(prefix: Path) -> None:
    subprocess.run(
        [shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(prefix / "key.pem"), "-out", str(prefix / "cert.pem")],
        check=True, capture_output=True, timeout=60)
