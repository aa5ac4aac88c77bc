"""One upload with httpx, the file streamed from disk: `python -m benchmarks.httpx_client`.

Arguments: kind (multipart | raw | prebuilt | tus), url, file, response file, method, content type.
Prints the HTTP status like curl's --write-out; exits 22 on an HTTP error like curl --fail.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

CHUNK = 1024 * 1024


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(CHUNK):
            yield block


def main(argv: list[str]) -> int:
    kind, url, source, response_path, method, content_type = argv
    path = Path(source)
    timeout = httpx.Timeout(30.0, read=None, write=None)
    with httpx.Client(timeout=timeout) as client:
        if kind == "tus":
            tus = {"tus-resumable": "1.0.0"}
            created = client.post(url, headers={**tus, "upload-length": str(path.stat().st_size),
                                                "upload-metadata": "filename YmVuY2guYmlu"})
            created.raise_for_status()
            response = client.patch(httpx.URL(url).join(created.headers["location"]), content=_chunks(path), headers={
                **tus, "upload-offset": "0", "content-type": "application/offset+octet-stream",
                "content-length": str(path.stat().st_size)})
        elif kind == "multipart":
            with path.open("rb") as stream:
                response = client.post(url, files={"file": ("bench.bin", stream, "application/octet-stream")})
        else:
            headers = {"content-length": str(path.stat().st_size),
                       "content-type": content_type or "application/octet-stream"}
            response = client.request(method if kind == "raw" else "POST", url, content=_chunks(path),
                                      headers=headers)
    Path(response_path).write_bytes(response.content)
    print(response.status_code, end="")
    return 0 if response.is_success else 22


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
