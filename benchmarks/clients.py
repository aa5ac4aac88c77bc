"""The upload clients, each a separate process: curl (C, default) or httpx (Python).

Each returns the argv of one upload and writes the response body to `response_path`;
the exit status and the HTTP status line tell the harness whether it succeeded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

Client = Literal["curl", "httpx"]
BodyKind = Literal["multipart", "raw", "prebuilt"]


def upload_argv(client: Client, kind: BodyKind, *, url: str, source: Path, response_path: Path,
                method: str = "POST", content_type: str | None = None) -> list[str]:
    """`multipart`: a form with one file part named "file"; `raw`: the file as the body;
    `prebuilt`: the file is already a whole request body of `content_type`."""
    if client == "httpx":
        return [sys.executable, "-m", "benchmarks.httpx_client", kind, url, str(source), str(response_path),
                method, content_type or ""]
    # "Expect:" turns off curl's 100-continue wait (up to 1 s for servers that do not answer
    # 100) so every server is timed on the transfer alone.
    argv = ["curl", "--silent", "--show-error", "--fail-with-body", "--output", str(response_path),
            "--write-out", "%{http_code}", "-H", "Expect:"]
    if kind == "multipart":
        argv += ["-F", f"file=@{source};filename=bench.bin;type=application/octet-stream"]
    elif kind == "raw":
        argv += ["-T", str(source), "-X", method, "-H", "Content-Type: application/octet-stream"]
    else:
        argv += ["-T", str(source), "-X", "POST", "-H", f"Content-Type: {content_type}"]
    return [*argv, url]
