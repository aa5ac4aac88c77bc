"""How much of a set of files the page cache holds: `fincore` (util-linux), read as bytes.

A multi-GB upload written through the page cache leaves up to all of its pages there, evicting
whatever else the machine had cached; with write-behind only the last windows stay.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def resident_bytes(paths: list[Path]) -> int | None:
    """Bytes of `paths` in the page cache now; None when fincore is missing or fails."""
    fincore = shutil.which("fincore")
    if fincore is None or not paths:
        return None if fincore is None else 0
    done = subprocess.run([fincore, "--bytes", "--noheadings", "--raw", "--output", "RES", *map(str, paths)],
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return None
    return sum(int(line) for line in done.stdout.split())
