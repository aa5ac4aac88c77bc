"""One measured run: start the contender, send the uploads, read /proc, check, clean up.

A run is valid only if every upload got a 2xx answer and every stored file has the input's
sha256; otherwise it is recorded as failed and left out of every median.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import pagecache, procstat
from benchmarks.clients import BodyKind, Client, upload_argv
from benchmarks.contenders import Contender
from benchmarks.inputs import InputFile, file_sha256
from benchmarks.machine import load_average
from benchmarks.servers import ServerFailed, running

GiB = 1024**3


@dataclass(frozen=True)
class Upload:
    """One upload of a run: the file to send, how, and the sha256 its stored copy must have."""

    source: InputFile
    kind: BodyKind
    expected_sha256: str
    stored_size: int
    content_type: str | None = None

    @classmethod
    def of_file(cls, source: InputFile, kind: BodyKind) -> Upload:
        return cls(source, kind, source.sha256, source.size)


@dataclass
class Run:
    contender: str
    scenario: str
    size: int  # bytes of each stored file
    uploads: int
    repetition: int
    client: str
    ok: bool = False
    error: str | None = None
    seconds: float | None = None
    throughput_mb_s: float | None = None  # stored bytes of all uploads / client wall time, 10^6 B/s
    cpu_s_per_gib: float | None = None
    peak_rss_bytes: int | None = None
    write_bytes_per_byte: float | None = None
    cancelled_write_bytes: int | None = None
    server_processes: int | None = None
    load_average: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _scratch(run: Run, workroot: Path) -> Iterator[Path]:
    """A fresh work dir for one run, removed afterwards; a failure to start or to talk to the
    contender is recorded in the run, which is then invalid."""
    workdir = workroot / f"{run.contender}-{run.scenario}-{run.repetition}-{os.getpid()}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        yield workdir
    except (ServerFailed, OSError, subprocess.SubprocessError) as error:
        run.error = f"{type(error).__name__}: {error}"
        run.ok = False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure(contender: Contender, uploads: list[Upload], *, scenario: str, repetition: int, client: Client,
            workroot: Path) -> Run:
    run = Run(contender.name, scenario, uploads[0].stored_size, len(uploads), repetition, client,
              load_average=load_average())
    if contender.bound is not None:
        return _measure_bound(contender, run, uploads, workroot)
    with _scratch(run, workroot) as workdir:
        if contender.is_server:
            with running(contender, workdir) as (process, port):
                before = procstat.tree_usage(process.pid)
                seconds, _, outcomes = _send(contender, uploads, port, client, workdir)
                usage = procstat.tree_usage(process.pid).minus(before)
            failures = [failure for failure in outcomes if failure]
        else:
            seconds, usage, failures = _run_local(contender, uploads, workdir)
        _record(run, seconds, usage, uploads)
        # What the upload left in the page cache (fincore), before anything reads it back.
        if not contender.discards:
            run.extra["page_cache_bytes"] = pagecache.resident_bytes(contender.stored(workdir))
        run.error = "; ".join(failures) or _check_stored(contender, uploads, workdir)
        run.ok = run.error is None
    return run


def _measure_bound(contender: Contender, run: Run, uploads: list[Upload], workroot: Path) -> Run:
    """A bound (benchmarks/bounds.py) over the uploads' size, in a process of its own, which
    measures its own loop; valid when it did every byte (and wrote the right ones)."""
    size = sum(upload.stored_size for upload in uploads)
    with _scratch(run, workroot) as workdir:
        target = workdir / "bound.bin"
        done = subprocess.run([sys.executable, "-m", "benchmarks.bounds", str(contender.bound), str(size),
                               str(target)], capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            run.error = f"bound exited {done.returncode}: {done.stderr[-500:]}"
            return run
        result = json.loads(done.stdout)
        run.seconds = round(result["seconds"], 4)
        run.throughput_mb_s = round(size / result["seconds"] / 1e6, 1)
        run.cpu_s_per_gib = round(result["cpu_seconds"] / (size / GiB), 3)
        run.peak_rss_bytes = result["peak_rss_bytes"]
        run.write_bytes_per_byte = round(result.get("write_bytes", 0) / size, 3)
        run.server_processes = 1
        run.extra = {key: result[key] for key in ("fsync_seconds", "sync_file_range", "window") if key in result}
        if result["bytes"] != size:
            run.error = f"the bound did {result['bytes']} of {size} bytes"
        elif "sha256" in result:
            run.extra["page_cache_bytes"] = pagecache.resident_bytes([target])
            if target.stat().st_size != size or file_sha256(target) != result["sha256"]:
                run.error = "the written file differs from what was written (size or sha256)"
        run.ok = run.error is None
    return run


def _send(contender: Contender, uploads: list[Upload], port: int, client: Client,
          workdir: Path, *, first_number: int = 0) -> tuple[float, list[float], list[str | None]]:
    """Start every client at once and wait for all. Returns the wall time of the batch,
    each upload's own wall time, and each upload's failure (None: a 2xx answer)."""
    started = time.perf_counter()

    def one(number: int, upload: Upload) -> tuple[float, str | None]:
        url = f"http://127.0.0.1:{port}{contender.url_path.replace('{n}', str(number))}"
        response = workdir / f"response-{number}"
        argv = upload_argv(client, upload.kind, url=url, source=upload.source.path, response_path=response,
                           method=contender.method, content_type=upload.content_type)
        done = subprocess.run(argv, capture_output=True, check=False)
        seconds = time.perf_counter() - started
        status = done.stdout.decode(errors="replace").strip()
        if done.returncode == 0 and status.startswith("2"):
            return seconds, None
        body = response.read_text(errors="replace")[:300] if response.exists() else ""
        return seconds, (f"upload {number}: exit {done.returncode}, HTTP {status or '-'} {body} "
                         f"{done.stderr.decode(errors='replace')[:300]}").strip()

    with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
        results = list(pool.map(one, range(first_number, first_number + len(uploads)), uploads))
    return (time.perf_counter() - started, [seconds for seconds, _ in results],
            [failure for _, failure in results])


def measure_stall(contender: Contender, normal: list[Upload], adversarial: Upload, *, repetition: int,
                  client: Client, workroot: Path) -> Run:
    """Does one adversarial upload slow down normal ones on the same server?

    Phase 1 sends the normal uploads alone; phase 2 sends the same uploads while the
    adversarial one runs (started together). The normal uploads' throughput in both phases
    and what became of the adversarial upload go to `extra`: stored (its rate), or refused
    with a 4xx (ingest's parse budget does that by design; then the seconds to the refusal).
    The run is valid when every normal upload is stored right and the adversarial one is
    either stored right or refused with a 4xx.
    """
    run = Run(contender.name, "adversarial-stall", normal[0].stored_size, len(normal), repetition, client,
              load_average=load_average())
    normal_bytes = sum(upload.stored_size for upload in normal)
    with _scratch(run, workroot) as workdir:
        with running(contender, workdir) as (process, port):
            before = procstat.tree_usage(process.pid)
            alone, _, outcomes = _send(contender, normal, port, client, workdir)
            _, each, beside = _send(contender, [adversarial, *normal], port, client, workdir,
                                    first_number=len(normal))
            usage = procstat.tree_usage(process.pid).minus(before)
        adversarial_failure, failures = beside[0], [f for f in [*outcomes, *beside[1:]] if f]
        refused = adversarial_failure is not None and " HTTP 4" in adversarial_failure
        if adversarial_failure and not refused:
            failures.append(adversarial_failure)
        with_adversarial = max(each[1:])
        run.extra = {
            "normal_alone_mb_s": round(normal_bytes / alone / 1e6, 1),
            "normal_with_adversarial_mb_s": round(normal_bytes / with_adversarial / 1e6, 1),
            "adversarial_outcome": "refused" if refused else "stored",
            "adversarial_seconds": round(each[0], 3),
            "adversarial_mb_s": None if refused else round(adversarial.stored_size / each[0] / 1e6, 1),
            "adversarial_size": adversarial.stored_size,
        }
        stored = [*normal, *normal] if refused else [*normal, *normal, adversarial]
        _record(run, alone + max(each), usage, stored)
        run.throughput_mb_s = run.extra["normal_with_adversarial_mb_s"]
        run.error = "; ".join(failures) or _check_stored(contender, stored, workdir)
        run.ok = run.error is None
    return run


def _run_local(contender: Contender, uploads: list[Upload],
               workdir: Path) -> tuple[float, procstat.Usage, list[str]]:
    """A local contender (dd): the measured processes are the commands themselves."""
    assert contender.local is not None
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    processes = [subprocess.Popen(contender.local(upload.source.path, store / f"bench-{number}.bin"))
                 for number, upload in enumerate(uploads)]
    total = procstat.Usage(0.0, 0, 0, 0, 0)
    failures = []
    for number, process in enumerate(processes):
        code, usage = procstat.reap_with_usage(process.pid)
        process.returncode = code  # reaped by us; keeps Popen from waiting on a gone pid
        if code != 0:
            failures.append(f"upload {number}: exit {code}")
        total = procstat.Usage(total.cpu_seconds + usage.cpu_seconds, total.peak_rss_bytes + usage.peak_rss_bytes,
                               total.write_bytes + usage.write_bytes,
                               total.cancelled_write_bytes + usage.cancelled_write_bytes, total.processes + 1)
    return time.perf_counter() - started, total, failures


def _record(run: Run, seconds: float, usage: procstat.Usage, uploads: list[Upload]) -> None:
    stored_bytes = sum(upload.stored_size for upload in uploads)
    run.seconds = round(seconds, 4)
    run.throughput_mb_s = round(stored_bytes / seconds / 1e6, 1)
    run.cpu_s_per_gib = round(usage.cpu_seconds / (stored_bytes / GiB), 3)
    run.peak_rss_bytes = usage.peak_rss_bytes
    run.write_bytes_per_byte = round(usage.write_bytes / stored_bytes, 3)
    run.cancelled_write_bytes = usage.cancelled_write_bytes
    run.server_processes = usage.processes


def _check_stored(contender: Contender, uploads: list[Upload], workdir: Path) -> str | None:
    if contender.discards:
        for number, upload in enumerate(uploads):
            received = json.loads((workdir / f"response-{number}").read_text()).get("received")
            if received != upload.source.size:
                return f"upload {number}: the server received {received} of {upload.source.size} bytes"
        return None
    stored = contender.stored(workdir)
    if len(stored) != len(uploads):
        return f"{len(stored)} files stored for {len(uploads)} uploads"
    expected = sorted(upload.expected_sha256 for upload in uploads)
    found = sorted(file_sha256(path) for path in stored)
    if found != expected:
        return "stored bytes differ from the input (sha256 mismatch)"
    return None
