"""Measure what nginx changes for ingest: body chunk sizes the app receives, and the wait
after the last byte (fsync, rename, catalog). The figures in README's "Deploying behind nginx".

    make measure-proxy        # or: .venv/bin/python deploy/measure_proxy.py [--size-mib 256]

Starts, on loopback only, an ingest server whose body reader logs every chunk's size, and
nginx from deploy/nginx/ingest.conf with client_body_buffer_size at nginx's default (16k) and
as shipped (1m); uploads with curl at full speed and rate-limited (a client slower than the
app). Then times a 1 GiB PUT with fsync on, direct and through nginx.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MiB = 1024 * 1024


def serve_probe(port: int, data_dir: Path) -> None:
    """ingest as `ingest serve` runs it, behind an ASGI wrapper that logs each upload's body
    chunk sizes (as uvicorn hands them to the app) to stderr, one JSON list per request."""
    import uvicorn
    from starlette.types import Message, Receive, Scope, Send

    from ingest.app import create_app
    from ingest.config import Settings

    app = create_app(Settings(data_dir=data_dir, fsync=False))

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await app(scope, receive, send)
            return
        sizes: list[int] = []

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                sizes.append(len(message["body"]))
            return message

        try:
            await app(scope, counting_receive, send)
        finally:
            print(json.dumps(sizes), file=sys.stderr, flush=True)

    uvicorn.run(logged, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning",
                timeout_keep_alive=75)


def chunk_sizes(size_mib: int, rates: list[str]) -> None:
    from benchmarks.nginx_proxy import free_port, start_nginx

    work = Path(tempfile.mkdtemp(prefix="measure-proxy-"))
    source = work / "source.bin"
    source.write_bytes(os.urandom(size_mib * MiB))
    port = free_port()
    log_path = work / "chunks.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, __file__, "--serve-probe", str(port), str(work / "data")],
                                  stderr=log)
    time.sleep(3)

    def upload(base: str, rate: str, chunked: bool) -> str:
        before = len(log_path.read_text().splitlines())
        command = ["curl", "-sS", "-o", os.devnull, "--limit-rate", rate, "-T", str(source)]
        if chunked:
            command += ["-H", "Transfer-Encoding: chunked"]
        subprocess.run([*command, base + "/uploads/m.bin"], check=True)
        time.sleep(0.3)
        (line,) = log_path.read_text().splitlines()[before:]
        sizes = sorted(json.loads(line))
        return (f"{len(sizes):6d} chunks, mean {statistics.mean(sizes) / 1000:6.1f} kB, "
                f"median {statistics.median(sizes) / 1000:6.1f} kB, p10 {sizes[len(sizes) // 10] / 1000:6.1f} kB")

    try:
        for rate in rates:
            label = "full speed" if rate == "0" else f"--limit-rate {rate}"
            print(f"{label}, direct:                    {upload(f'http://127.0.0.1:{port}', rate, False)}")
            for buffer in ("16k", "1m"):
                proxy = start_nginx(port, overrides={"client_body_buffer_size": buffer})
                try:
                    print(f"{label}, nginx {buffer:>3}, Content-Length: {upload(proxy.url, rate, False)}")
                    print(f"{label}, nginx {buffer:>3}, chunked:        {upload(proxy.url, rate, True)}")
                finally:
                    proxy.stop()
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def post_body_wait(size_mib: int) -> None:
    from benchmarks.nginx_proxy import start_nginx
    from tests.conftest import start_server, stop_server

    work = Path(tempfile.mkdtemp(prefix="measure-proxy-"))
    app = start_server(work / "data", "--fsync", "--proxy-headers")
    proxy = start_nginx(app.port)
    block = os.urandom(4 * MiB)
    size = size_mib * MiB
    try:
        for label, port in (("direct", app.port), ("nginx ", proxy.port)):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(f"PUT /uploads/t.bin HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n".encode())
                for _ in range(size // len(block)):
                    sock.sendall(block)
                last_byte = time.monotonic()
                status = sock.recv(65536).split(b"\r\n")[0].decode()
                waited = time.monotonic() - last_byte
            print(f"{label} {size_mib} MiB PUT, fsync on: answered {waited:.2f} s after the last byte ({status})")
    finally:
        proxy.stop()
        stop_server(app)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-probe", nargs=2, metavar=("PORT", "DATA_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--size-mib", type=int, default=256, help="upload size for the chunk measurement")
    parser.add_argument("--rates", default="0,50M", help="curl --limit-rate values; 0 = full speed")
    parser.add_argument("--commit-mib", type=int, default=1024, help="upload size for the post-body wait")
    args = parser.parse_args()
    if args.serve_probe:
        serve_probe(int(args.serve_probe[0]), Path(args.serve_probe[1]))
        return
    chunk_sizes(args.size_mib, args.rates.split(","))
    post_body_wait(args.commit_mib)


if __name__ == "__main__":
    main()
