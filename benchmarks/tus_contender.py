"""tus contender: what resumability costs, on one real ingest server over loopback.

Measures, for one file size, the wall time from the first request to the stored file (sha256
checked against the catalog) of:
  put          raw `PUT /uploads/{name}` (the baseline: one request, one stream)
  tus-single   tus POST + one PATCH of the whole file (one stream, offsets and state on disk)
  tus-concat4  4 partial uploads PATCHed in parallel, then the final concatenation POST
and the server's peak RSS over the whole run. Every contender uses the same httpx client code
(1 MiB reads), repetitions are interleaved so that drift of a shared machine hits all alike.

    .venv/bin/python benchmarks/tus_contender.py --size 1GiB --repeat 3 [--fsync]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.config import parse_size
from tests.conftest import start_server, stop_server

MiB = 1024 * 1024
TUS = {"tus-resumable": "1.0.0"}


def file_blocks(path: Path, start: int, end: int) -> Iterator[bytes]:
    with path.open("rb") as source:
        source.seek(start)
        while start < end and (block := source.read(min(MiB, end - start))):
            start += len(block)
            yield block


def put(client: httpx.Client, path: Path, size: int) -> str:
    response = client.put("/uploads/bench.bin", content=file_blocks(path, 0, size),
                          headers={"content-length": str(size)})
    assert response.status_code == 201, response.text
    return str(response.json()["files"][0]["id"])


def tus_single(client: httpx.Client, path: Path, size: int) -> str:
    created = client.post("/files/", headers={**TUS, "upload-length": str(size),
                                              "upload-metadata": f"filename {base64.b64encode(b'bench.bin').decode()}"})
    response = client.patch(created.headers["location"], content=file_blocks(path, 0, size), headers={
        **TUS, "upload-offset": "0", "content-type": "application/offset+octet-stream",
        "content-length": str(size)})
    assert response.status_code == 204, response.text
    return response.headers["ingest-file-id"]


def tus_concat4(client: httpx.Client, path: Path, size: int) -> str:
    bounds = [size * index // 4 for index in range(5)]

    def part(index: int) -> str:
        start, end = bounds[index], bounds[index + 1]
        created = client.post("/files/", headers={**TUS, "upload-concat": "partial",
                                                  "upload-length": str(end - start)})
        url = created.headers["location"]
        response = client.patch(url, content=file_blocks(path, start, end), headers={
            **TUS, "upload-offset": "0", "content-type": "application/offset+octet-stream",
            "content-length": str(end - start)})
        assert response.status_code == 204, response.text
        return url

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        urls = list(pool.map(part, range(4)))
    final = client.post("/files/", headers={**TUS, "upload-concat": "final;" + " ".join(urls)})
    assert final.status_code == 201, final.text
    return final.headers["ingest-file-id"]


CONTENDERS: dict[str, Callable[[httpx.Client, Path, int], str]] = {
    "put": put, "tus-single": tus_single, "tus-concat4": tus_concat4}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GiB", type=parse_size)
    parser.add_argument("--repeat", default=3, type=int)
    parser.add_argument("--fsync", action="store_true", help="serve with fsync on (default off)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tus-bench-") as workdir:
        source = Path(workdir) / "input.bin"
        digest = hashlib.sha256()
        with source.open("wb") as out:
            block = os.urandom(4 * MiB)
            for index in range(0, args.size, len(block)):
                chunk = (index.to_bytes(8, "big") + block[8:])[:args.size - index]
                digest.update(chunk)
                out.write(chunk)
        expected = digest.hexdigest()
        seconds: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        server = start_server(Path(workdir) / "data", "--fsync" if args.fsync else "--no-fsync")
        try:
            with httpx.Client(base_url=server.url, timeout=httpx.Timeout(60.0, read=None, write=None)) as client:
                for _ in range(args.repeat):
                    for name, contender in CONTENDERS.items():
                        started = time.perf_counter()
                        file_id = contender(client, source, args.size)
                        seconds[name].append(time.perf_counter() - started)
                        stored = client.get(f"/uploads/{file_id}").json()
                        assert stored["sha256"] == expected, (name, stored)
                        client.delete(f"/uploads/{file_id}")
            peak_rss = server.peak_rss_bytes()
        finally:
            stop_server(server)
    print(f"size {args.size / MiB:.0f} MiB, fsync {'on' if args.fsync else 'off'}, {args.repeat} runs, "
          f"{os.cpu_count()} CPUs; server peak RSS {peak_rss / MiB:.0f} MiB over the whole run")
    print(f"{'contender':<12} {'median s':>9} {'MiB/s':>8} {'min s':>7} {'max s':>7}")
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"{name:<12} {median:>9.2f} {args.size / MiB / median:>8.0f} {min(times):>7.2f} {max(times):>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
