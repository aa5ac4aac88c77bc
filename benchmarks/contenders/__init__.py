"""The contenders: how to start each one, how to send it a file, where it stores the file.

To add one (tus, S3...), build a `Contender` and `register` it, here or from a module
imported below; the harness, report and plots pick it up by name. A contender is either a
server the harness starts on a free loopback port (`launch` returns its command; a wrapper
may start several processes, as ingest behind nginx does: the harness measures and stops the
whole tree) or a local command that writes the file itself (`local`, as dd). `scenarios`
says where it is measured: the proxy scenario has its own contenders, and a contender made
for one comparison (ingest without hashing) need not cost time in every scenario. Three other
kinds: a download contender (`place` puts the input where the server serves it; scenario
`download`), a bound measured in a process of its own (`bound`: benchmarks/bounds.py), and a
server that stores nothing (`discards`: it answers the byte count it received).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from benchmarks.inputs import InputFile

Mode = Literal["multipart", "raw", "tus"]  # tus: a creation POST, then one PATCH of the whole file
# The scenarios a contender takes part in unless it says otherwise (the --scenarios choice
# "adversarial" runs both "adversarial" and "adversarial-stall", for multipart contenders
# only); "proxy" is opt-in.
USUAL_SCENARIOS = ("single", "concurrent", "adversarial", "adversarial-stall")


@dataclass(frozen=True)
class Launch:
    """What a server contender is given to start: its port and a fresh empty directory."""

    port: int
    workdir: Path

    @property
    def store_dir(self) -> Path:
        return self.workdir / "store"


@dataclass(frozen=True)
class ServerCommand:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    settings: str  # what the report says about fsync / hashing / buffers
    mode: Mode  # how the client sends the file: multipart form or raw body
    url_path: str = "/upload"  # "{n}" is replaced by the upload's number
    method: str = "POST"  # raw mode only: curl -T sends PUT, or POST with -X POST
    launch: Callable[[Launch], ServerCommand] | None = None
    local: Callable[[Path, Path], list[str]] | None = None  # (input, destination) -> argv
    stored: Callable[[Path], list[Path]] = lambda workdir: _files_under(workdir / "store")
    requires: tuple[str, ...] = ()  # command-line tools that must be installed
    health_path: str | None = None  # None: a TCP connect is enough
    scenarios: tuple[str, ...] = USUAL_SCENARIOS
    # Download contenders: put the input where the running server (its port, the run's work
    # dir) serves it, return the URL path to GET.
    place: Callable[[int, Path, InputFile], str] | None = None
    bound: str | None = None  # measured by `python -m benchmarks.bounds <bound>`, not a server
    discards: bool = False  # stores nothing; answers {"received": <bytes>}, which the harness checks

    @property
    def is_server(self) -> bool:
        return self.launch is not None

    @property
    def stores(self) -> bool:
        """Takes uploads and stores them where `stored` finds them."""
        return self.place is None and self.bound is None and not self.discards


REGISTRY: dict[str, Contender] = {}


def register(contender: Contender) -> Contender:
    if contender.name in REGISTRY:
        raise ValueError(f"contender {contender.name!r} registered twice")
    REGISTRY[contender.name] = contender
    return contender


def missing_tools(contender: Contender) -> list[str]:
    return [tool for tool in contender.requires if shutil.which(tool) is None]


def _files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def uvicorn_command(target: str, launch: Launch, *, factory: bool = False) -> ServerCommand:
    """Every Python baseline under the same uvicorn settings as `ingest serve`."""
    argv = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(launch.port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    if factory:
        argv.append("--factory")
    return ServerCommand(argv, {"BENCH_STORE_DIR": str(launch.store_dir)})


from benchmarks.contenders import builtin as _builtin  # noqa: E402,F401 - registers the built-in set
from benchmarks.contenders import downloads as _downloads  # noqa: E402,F401 - and the download set
