"""Start a contender's server on a free loopback port, wait until it answers, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from benchmarks.contenders import Contender, Launch

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerFailed(RuntimeError):
    pass


@contextlib.contextmanager
def running(contender: Contender, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The server process (its own session, so the whole tree stops together) and its port."""
    assert contender.launch is not None
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    command = contender.launch(Launch(port, workdir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    # Spooled uploads (python-multipart) go to the run's own directory, on the same
    # filesystem as the stored files, and are removed with it.
    env.update({"TMPDIR": str(workdir / "tmp"), **command.env})
    log_path = workdir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _wait_ready(process, port, contender.health_path, log_path)
        yield process, port
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], port: int, health_path: str | None, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if health_path is None:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            else:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{health_path}", timeout=1) as answer:
                    if answer.status == 200:
                        return
        except OSError:
            time.sleep(0.05)
    raise ServerFailed(f"server did not start within {START_TIMEOUT} s: {log_path.read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Leftover members of the session (nginx workers) go with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
