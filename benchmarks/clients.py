"""The upload clients, each a separate process: curl (C, default) or httpx (Python).

Each returns the argv of one upload and writes the response body to `response_path`;
the exit status and the HTTP status line tell the harness whether it succeeded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

Client = Literal["curl", "httpx"]
BodyKind = Literal["multipart", "raw", "prebuilt", "tus"]

# tus 1.0 (https://tus.io/protocols/resumable-upload): create the upload, then PATCH the whole
# file at offset 0. Both requests are timed, as a tus client makes both. The status printed is
# the PATCH's (204); "bench.bin" is the filename in Upload-Metadata (base64).
_TUS_SCRIPT = r"""
set -e
location=$(curl --silent --show-error --fail-with-body --output /dev/null --write-out '%header{location}' \
    -X POST -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $(stat -c %s "$1")" \
    -H 'Upload-Metadata: filename YmVuY2guYmlu' "$3")
case "$location" in /*) location="$4$location" ;; esac
exec curl --silent --show-error --fail-with-body --output "$2" --write-out '%{http_code}' -H 'Expect:' \
    -X PATCH -T "$1" -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' \
    -H 'Content-Type: application/offset+octet-stream' "$location"
"""


def upload_argv(client: Client, kind: BodyKind, *, url: str, source: Path, response_path: Path,
                method: str = "POST", content_type: str | None = None) -> list[str]:
    """`multipart`: a form with one file part named "file"; `raw`: the file as the body;
    `prebuilt`: the file is already a whole request body of `content_type`; `tus`: a tus
    creation POST to `url`, then one PATCH of the file."""
    if client == "httpx":
        return [sys.executable, "-m", "benchmarks.httpx_client", kind, url, str(source), str(response_path),
                method, content_type or ""]
    if kind == "tus":
        parts = urlsplit(url)
        return ["sh", "-c", _TUS_SCRIPT, "tus-upload", str(source), str(response_path), url,
                f"{parts.scheme}://{parts.netloc}"]
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


def download_argv(url: str) -> list[str]:
    """curl fetching `url` whole into /dev/null; prints "<status> <bytes received>"."""
    return ["curl", "--silent", "--show-error", "--fail-with-body", "--output", "/dev/null",
            "--write-out", "%{http_code} %{size_download}", url]
