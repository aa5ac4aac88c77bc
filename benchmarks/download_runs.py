"""One measured download: start the contender, place the file, fetch it whole, read /proc.

Before the timed fetch, the file is fetched once untimed and the bytes received are hashed
here: a run is valid only if they have the input's SHA-256 and the timed fetch got a 200
and every byte. That first fetch also brings the file into the page cache, so every
contender serves from memory: the scenario measures the serving path, not the disk.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from benchmarks import procstat
from benchmarks.clients import download_argv
from benchmarks.contenders import Contender
from benchmarks.inputs import InputFile
from benchmarks.machine import load_average
from benchmarks.runner import Run, Upload, _record, _scratch
from benchmarks.servers import running

READ = 1024 * 1024
TIMEOUT = 3600.0


def measure_download(contender: Contender, source: InputFile, *, repetition: int, workroot: Path) -> Run:
    assert contender.place is not None
    run = Run(contender.name, "download", source.size, 1, repetition, "curl", load_average=load_average())
    with _scratch(run, workroot) as workdir, running(contender, workdir) as (process, port):
        url = f"http://127.0.0.1:{port}{contender.place(port, workdir, source)}"
        run.error = _received_digest_error(url, source)
        if run.error is None:
            before = procstat.tree_usage(process.pid)
            started = time.perf_counter()
            done = subprocess.run(download_argv(url), capture_output=True, text=True, timeout=TIMEOUT, check=False)
            seconds = time.perf_counter() - started
            usage = procstat.tree_usage(process.pid).minus(before)
            status, _, received = done.stdout.strip().partition(" ")
            _record(run, seconds, usage, [Upload.of_file(source, "raw")])
            if done.returncode != 0 or status != "200" or received != str(source.size):
                run.error = (f"download: exit {done.returncode}, HTTP {status or '-'}, {received or '?'} of "
                             f"{source.size} bytes {done.stderr[:300]}").strip()
        run.ok = run.error is None
    return run


def _received_digest_error(url: str, source: InputFile) -> str | None:
    """Fetch `url` whole (untimed) and compare the SHA-256 of what arrived with the input's."""
    digest = hashlib.sha256()
    argv = ["curl", "--silent", "--show-error", "--fail", url]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as fetch:
        assert fetch.stdout is not None
        while block := fetch.stdout.read(READ):
            digest.update(block)
        _, stderr = fetch.communicate(timeout=TIMEOUT)
    if fetch.returncode != 0:
        return f"download: exit {fetch.returncode} {stderr.decode(errors='replace')[:300]}"
    if digest.hexdigest() != source.sha256:
        return "downloaded bytes differ from the input (sha256 mismatch)"
    return None
