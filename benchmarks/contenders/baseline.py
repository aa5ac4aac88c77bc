"""ingest as of another git revision, run beside today's in the same run: `--baseline REV`.

A before/after comparison is only fair in one run with the contenders interleaved (the test
machines are shared and noisy), so the earlier ingest must be a contender like any other.
`git archive REV ingest` is unpacked into the input cache; each selected contender that starts
plain `python -m ingest` gets a twin named `<name>@<rev>` that starts the unpacked package
instead (`python -P`, so the checkout's own `ingest/` is not on the path). Both use this
environment's packages; a revision needing others is not supported.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.contenders import REGISTRY, Contender, Launch, ServerCommand, register

REPO = Path(__file__).resolve().parents[2]


def unpack(revision: str, cache_dir: Path) -> tuple[str, Path]:
    """The revision's short hash and the directory holding its `ingest` package."""
    short = subprocess.run(["git", "rev-parse", "--short", revision], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.strip()
    directory = cache_dir / f"baseline-{short}"
    if not (directory / "ingest" / "__init__.py").exists():
        directory.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", short, "ingest"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return short, directory


def twins(names: list[str], revision: str, cache_dir: Path) -> list[str]:
    """`names` with a `<name>@<rev>` twin after each plain-ingest contender, registered."""
    short, directory = unpack(revision, cache_dir)
    result = []
    for name in names:
        result.append(name)
        contender = REGISTRY[name]
        if contender.launch is None or not _starts_plain_ingest(contender):
            continue
        twin_name = f"{name}@{short}"
        if twin_name not in REGISTRY:
            register(dataclasses.replace(
                contender, name=twin_name, description=f"{contender.description}, as of {short}",
                launch=_from(directory, contender)))
        result.append(twin_name)
    return result


def _starts_plain_ingest(contender: Contender) -> bool:
    assert contender.launch is not None
    argv = contender.launch(Launch(port=0, workdir=Path("/nonexistent"))).argv
    return argv[:3] == [sys.executable, "-m", "ingest"]


def _from(directory: Path, contender: Contender) -> Callable[[Launch], ServerCommand]:
    launch = contender.launch
    assert launch is not None

    def launch_baseline(where: Launch) -> ServerCommand:
        command = launch(where)
        return ServerCommand([sys.executable, "-P", *command.argv[1:]],
                             {**command.env, "PYTHONPATH": str(directory)})
    return launch_baseline
