"""nginx serving a file with `sendfile on`: the download reference (C, zero-copy).
https://nginx.org/en/docs/http/ngx_http_core_module.html#sendfile
"""

from __future__ import annotations

import os

from benchmarks.contenders import Launch, ServerCommand

_CONFIG = """\
{user}worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/client_body_temp;
    proxy_temp_path {workdir}/proxy_temp;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        root {store};
        location /files/ {{ }}
    }}
}}
"""


def nginx_sendfile_command(launch: Launch) -> ServerCommand:
    store = launch.store_dir
    (store / "files").mkdir(parents=True, exist_ok=True)
    config = launch.workdir / "nginx-static.conf"
    config.write_text(_CONFIG.format(
        # As root, workers would switch to "nobody", who may not read the work dir.
        user="user root;\n" if os.geteuid() == 0 else "", workdir=launch.workdir, store=store, port=launch.port))
    return ServerCommand(["nginx", "-p", str(launch.workdir), "-c", str(config), "-e",
                          str(launch.workdir / "error.log")])
