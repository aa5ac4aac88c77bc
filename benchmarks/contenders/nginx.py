"""nginx as the C reference, from a config written per run (one worker, no access log):
- `dav_methods PUT` for uploads: the body is written to client_body_temp_path, then renamed
  into `root` (same filesystem). https://nginx.org/en/docs/http/ngx_http_dav_module.html
- `sendfile on` for downloads: zero-copy from the page cache.
  https://nginx.org/en/docs/http/ngx_http_core_module.html#sendfile
"""

from __future__ import annotations

import os

from benchmarks.contenders import Launch, ServerCommand

_MAIN = """\
{user}worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{http}
}}
"""

_DAV = """\
    client_body_temp_path {store}/tmp;
    client_max_body_size 0;
    {buffer}
    server {{
        listen 127.0.0.1:{port};
        root {store};
        location /files/ {{
            dav_methods PUT;
            create_full_put_path on;
        }}
    }}"""

_STATIC = """\
    client_body_temp_path {workdir}/client_body_temp;
    proxy_temp_path {workdir}/proxy_temp;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        root {store};
        location /files/ {{ }}
    }}"""


def _nginx(launch: Launch, config_name: str, http: str) -> ServerCommand:
    config = launch.workdir / config_name
    # As root, workers would switch to "nobody", who could not use the store or the work dir.
    config.write_text(_MAIN.format(user="user root;\n" if os.geteuid() == 0 else "",
                                   workdir=launch.workdir, http=http))
    return ServerCommand(["nginx", "-p", str(launch.workdir), "-c", str(config), "-e",
                          str(launch.workdir / "error.log")])


def nginx_dav_command(launch: Launch, *, body_buffer: str | None) -> ServerCommand:
    store = launch.store_dir
    (store / "tmp").mkdir(parents=True, exist_ok=True)
    (store / "files").mkdir(parents=True, exist_ok=True)
    buffer = f"client_body_buffer_size {body_buffer};" if body_buffer else "# default body buffer"
    return _nginx(launch, "nginx.conf", _DAV.format(store=store, port=launch.port, buffer=buffer))


def nginx_sendfile_command(launch: Launch) -> ServerCommand:
    store = launch.store_dir
    (store / "files").mkdir(parents=True, exist_ok=True)
    return _nginx(launch, "nginx-static.conf",
                  _STATIC.format(workdir=launch.workdir, store=store, port=launch.port))
