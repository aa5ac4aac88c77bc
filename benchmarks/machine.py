"""What the numbers were measured on: CPU, memory, kernel, versions, filesystem, load."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("ingest", "starlette", "uvicorn", "uvloop", "httptools", "streaming-form-data", "fastapi",
            "python-multipart", "aiohttp", "httpx", "granian", "matplotlib")


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def filesystem_of(path: Path) -> dict[str, str]:
    """The mount holding `path`: the longest mount point that is a prefix of it."""
    resolved = str(path.resolve())
    best = {"mount_point": "/", "type": "?", "device": "?"}
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount_point, fs_type = line.split()[:3]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best["mount_point"]):
            best = {"mount_point": mount_point, "type": fs_type, "device": device}
    return best


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def describe(data_dir: Path) -> dict[str, Any]:
    cpu_model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_total = int(line.split()[1]) * 1024
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_bytes": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "tools": {"curl": _first_line(["curl", "--version"]), "nginx": _first_line(["nginx", "-v"])},
        "data_filesystem": filesystem_of(data_dir),
        "load_average_at_start": load_average(),
    }
