"""Where the baseline apps put what they receive: a fresh name under $BENCH_STORE_DIR.

The client's filename never becomes a path; the harness finds the stored files by listing
this directory and checks their sha256 against the input's.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

CHUNK = 1024 * 1024  # the copy size the seed's recipe and the common answers use


def destination() -> Path:
    store = Path(os.environ["BENCH_STORE_DIR"])
    store.mkdir(parents=True, exist_ok=True)
    return store / f"{uuid.uuid4().hex}.bin"
