"""nginx with `dav_methods PUT`: the body is written to client_body_temp_path, then renamed
into `root` (same filesystem), in C. https://nginx.org/en/docs/http/ngx_http_dav_module.html
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
    }}
}}
"""


def nginx_dav_command(launch: Launch, *, body_buffer: str | None) -> ServerCommand:
    store = launch.store_dir
    (store / "tmp").mkdir(parents=True, exist_ok=True)
    (store / "files").mkdir(parents=True, exist_ok=True)
    config = launch.workdir / "nginx.conf"
    config.write_text(_CONFIG.format(
        # As root, workers would switch to "nobody" and could not write the store.
        user="user root;\n" if os.geteuid() == 0 else "",
        workdir=launch.workdir, store=store, port=launch.port,
        buffer=f"client_body_buffer_size {body_buffer};" if body_buffer else "# default body buffer"))
    error_log = str(launch.workdir / "error.log")
    return ServerCommand(["nginx", "-p", str(launch.workdir), "-c", str(config), "-e", error_log])
