"""Local disk against S3 (single-host Ceph radosgw) as ingest's storage backend.

Measures, for each backend, a `curl -T` raw upload of SIZE_MIB of random bytes to a real
ingest server on loopback: wall-clock throughput (MiB/s), the server's peak RSS (VmHWM) and
its CPU seconds (user + system, /proc/<pid>/stat) per GiB uploaded. The stored sha256 is
checked against the file for every upload. Ceph runs on the same machine, so its own CPU
competes with ingest's: read the S3 figures as a lower bound for a remote store.

    .venv/bin/python benchmarks/s3_vs_local.py [SIZE_MIB] [REPEATS]
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.backends import running_ceph
from tests.conftest import LiveServer, start_server, stop_server

MiB = 1024 * 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_input(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(4 * MiB)
    with path.open("wb") as out:
        for index in range(size // (4 * MiB)):
            varied = index.to_bytes(4, "big") + block[4:]
            digest.update(varied)
            out.write(varied)
    return digest.hexdigest()


def measure(server: LiveServer, path: Path, expected: str, repeats: int) -> dict[str, float]:
    size = path.stat().st_size
    seconds = cpu = 0.0
    for _ in range(repeats):
        cpu_before = cpu_seconds(server.process.pid)
        started = time.perf_counter()
        result = subprocess.run(["curl", "-sS", "--fail-with-body", "-T", str(path), server.url + "/uploads/"],
                                capture_output=True, check=True)
        seconds += time.perf_counter() - started
        cpu += cpu_seconds(server.process.pid) - cpu_before
        stored = json.loads(result.stdout)["files"][0]
        if stored["sha256"] != expected:
            raise SystemExit(f"sha256 mismatch: {stored['sha256']} != {expected}")
    gib = size * repeats / 1024**3
    return {"MiB/s": size * repeats / MiB / seconds, "peak RSS MiB": server.peak_rss_bytes() / MiB,
            "CPU s/GiB": cpu / gib}


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as scratch, running_ceph(gateways=1) as ceph:
        root = Path(scratch)
        path = root / "input.bin"
        expected = make_input(path, size_mib * MiB)
        client = ceph.client()
        client.create_bucket(Bucket="bench")
        rows: dict[str, dict[str, float]] = {}
        contenders = {"local disk": {}, "s3 (Ceph RGW, boto3 threads)": ceph.settings_env("bench")}
        for name, env in contenders.items():
            server = start_server(root / name.split()[0], "--no-fsync", env=env)
            try:
                rows[name] = measure(server, path, expected, repeats)
            finally:
                stop_server(server)
        print(f"\n{size_mib} MiB raw upload (curl -T), {repeats} runs each, loopback\n")
        print("| backend | MiB/s | peak RSS MiB | CPU s/GiB (ingest) |")
        print("|---|---|---|---|")
        for name, row in rows.items():
            print(f"| {name} | {row['MiB/s']:.0f} | {row['peak RSS MiB']:.0f} | {row['CPU s/GiB']:.2f} |")


if __name__ == "__main__":
    main()
