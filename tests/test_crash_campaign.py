"""A randomised crash campaign on one data dir: a real server, real clients (httpx multipart,
curl raw PUTs, tus PATCHes with and without Upload-Checksum) uploading at once, the server
killed with SIGKILL at a random moment or by itself at a random crash point (a commit moment),
restarted, every invariant of tests/crashes.py checked, pending tus uploads resumed by the
next round's clients — round after round, then everything finished and checked once more.

Bounded by INGEST_CRASH_SECONDS (30 s by default, half of it for the --workers 2 run);
`make crash` runs it for ten minutes and prints the figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import LiveServer, require_tool, stop_server
from tests.crashes import (
    Expectations,
    TusUploadRecord,
    check_after_restart,
    crash_points_hit,
    kill_9,
    past_the_age_rule,
    start,
    tus_create,
    tus_head,
    tus_patch,
)

MiB = 1024 * 1024
CAMPAIGN_SECONDS = float(os.environ.get("INGEST_CRASH_SECONDS", "30"))
CLIENTS = 4
# Commit moments, with how often each is reached per round (the nth is drawn up to it).
POINTS = {"temp.synced": 8, "blob.committed": 8, "rows.inserted": 8, "tus.chunk_appended": 12,
          "tus.state_staged": 16, "tus.state_written": 12, "tus.state_done": 4}
POOL = os.urandom(8 * MiB)


def new_body(rng: random.Random, most: int) -> bytes:
    size = rng.randrange(0, most)
    start_at = rng.randrange(0, len(POOL) - size)
    return os.urandom(16) + POOL[start_at:start_at + size]  # unique, so each sha256 is too


@dataclass
class Figures:
    rounds: int = 0
    crashes: int = 0
    at_crash_points: int = 0
    in_flight: int = 0  # uploads cut mid-request by the crashes (not refused connections)
    acknowledged: int = 0
    tus_resumed: int = 0
    lost: int = 0
    server_errors: list[str] = field(default_factory=list)


class Clients:
    """Client threads uploading against one server until told to stop or the server is gone."""

    def __init__(self, server: LiveServer, expected: Expectations, pending: list[TusUploadRecord],
                 figures: Figures, seed: int, scratch: Path) -> None:
        self.server, self.expected, self.pending, self.figures = server, expected, pending, figures
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(random.Random(seed + n), scratch / f"c{n}"))
                        for n in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _run(self, rng: random.Random, scratch: Path) -> None:
        while not self.stop.is_set():
            kind = rng.choice(["multipart", "raw", "tus", "tus"])
            try:
                getattr(self, f"_{kind}")(rng, scratch)
            except (httpx.ConnectError, ConnectionRefusedError):
                time.sleep(0.05)  # the server is down: keep trying until told to stop
            except (httpx.TransportError, ConnectionError):
                with self.lock:
                    self.figures.in_flight += 1  # the crash cut this upload mid-request
            except AssertionError as error:  # reported by the test, not lost in a thread
                self.figures.server_errors.append(f"{kind}: {error}")

    def _note(self, response: httpx.Response | None, status: int, what: str) -> None:
        if status >= 500:
            self.figures.server_errors.append(f"{what}: {status} {response.text if response else ''}")

    def _acknowledge(self, file_id: str, sha: str) -> None:
        with self.lock:
            self.expected.acknowledged[file_id] = sha
            self.figures.acknowledged += 1

    def _multipart(self, rng: random.Random, scratch: Path) -> None:
        bodies = [new_body(rng, 3 * MiB) for _ in range(rng.randint(1, 2))]
        shas = [hashlib.sha256(body).hexdigest() for body in bodies]
        with self.lock:
            self.expected.sent_whole.update(shas)
        response = httpx.post(self.server.url + "/uploads", timeout=60,
                              files=[(f"f{n}", (f"f{n}.bin", body)) for n, body in enumerate(bodies)])
        self._note(response, response.status_code, "multipart")
        if response.status_code == 201:
            for item, sha in zip(response.json()["files"], shas, strict=True):
                assert item["sha256"] == sha
                self._acknowledge(item["id"], sha)

    def _raw(self, rng: random.Random, scratch: Path) -> None:
        body = new_body(rng, 4 * MiB)
        sha = hashlib.sha256(body).hexdigest()
        scratch.mkdir(parents=True, exist_ok=True)
        source = scratch / "raw.bin"
        source.write_bytes(body)
        with self.lock:
            self.expected.sent_whole.add(sha)
        result = subprocess.run(["curl", "-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}",
                                 "-T", str(source), self.server.url + "/uploads/raw.bin"],
                                capture_output=True, text=True, timeout=90, check=False)
        if result.returncode == 7:  # curl: could not connect
            raise ConnectionRefusedError(result.stderr)
        if result.returncode != 0:
            raise ConnectionError(result.stderr)
        answer, _, status = result.stdout.rpartition("\n")
        self._note(None, int(status), f"raw PUT: {answer}")
        if status == "201":
            [item] = json.loads(answer)["files"]
            assert item["sha256"] == sha
            self._acknowledge(item["id"], sha)

    def _tus(self, rng: random.Random, scratch: Path) -> None:
        with self.lock:
            record = self.pending.pop(rng.randrange(len(self.pending))) if self.pending and rng.random() < 0.7 else None
        if record is None:
            body = new_body(rng, 6 * MiB)
            record = TusUploadRecord(path=tus_create(self.server, len(body)), body=body)
            with self.lock:
                self.expected.tus.append(record)
        else:
            with self.lock:
                self.figures.tus_resumed += 1
        try:
            while not self.stop.is_set() and record.file_id is None:
                offset = record.acknowledged
                chunk = record.body[offset:offset + rng.randrange(128 * 1024, 2 * MiB)]
                record.sent = max(record.sent, offset + len(chunk))
                response = tus_patch(self.server, record.path, offset, chunk, checksum=rng.random() < 0.5)
                self._note(response, response.status_code, "tus PATCH")
                if response.status_code == 409:  # another client of this upload was cut: resync
                    record.acknowledged = int(tus_head(self.server, record.path).headers["upload-offset"])
                    continue
                if response.status_code == 423:  # another worker still holds it: later
                    return
                assert response.status_code == 204, (response.status_code, response.text)
                record.acknowledged = int(response.headers["upload-offset"])
                if "ingest-file-id" in response.headers:
                    record.file_id = response.headers["ingest-file-id"]
                    self._acknowledge(record.file_id, hashlib.sha256(record.body).hexdigest())
        finally:
            if record.file_id is None:
                with self.lock:
                    self.pending.append(record)


def run_campaign(tmp_path: Path, seconds: float, *server_args: str) -> Figures:
    require_tool("curl")
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    data_dir = tmp_path / "data"
    expected, pending, figures = Expectations(), [], Figures()
    deadline = time.monotonic() + seconds
    crashed_at = 0.0
    while time.monotonic() < deadline:
        past_the_age_rule(crashed_at)
        at_point = rng.random() < 0.6
        spec = f"{(point := rng.choice(list(POINTS)))}:{rng.randint(1, POINTS[point])}" if at_point else None
        server = start_surviving_recovery(data_dir, spec, figures, server_args)
        check_after_restart(server, expected)
        pending[:] = [record for record in expected.tus if record.file_id is None]
        clients = Clients(server, expected, pending, figures, rng.randrange(1 << 30), tmp_path / "clients")
        if at_point:
            crash_deadline = time.monotonic() + 3
            while (server.process.poll() is None and not crash_points_hit(server)
                   and time.monotonic() < crash_deadline):
                time.sleep(0.01)
        else:
            time.sleep(rng.uniform(0.1, 2.0))
        figures.at_crash_points += bool(crash_points_hit(server))
        kill_9(server)
        crashed_at = time.time()
        figures.crashes += 1
        figures.rounds += 1
        clients.join()
    past_the_age_rule(crashed_at)
    server = start(data_dir, *server_args)
    try:
        check_after_restart(server, expected)
        for record in expected.tus:  # finish every upload still pending
            if record.file_id is None:
                answer = tus_patch(server, record.path, record.acknowledged, record.body[record.acknowledged:])
                assert answer.status_code == 204, answer.text
                record.sent = len(record.body)
                expected.acknowledged[answer.headers["ingest-file-id"]] = hashlib.sha256(record.body).hexdigest()
        files = check_after_restart(server, expected)
        figures.lost = sum(files.get(file_id, {}).get("sha256") != sha
                           for file_id, sha in expected.acknowledged.items())
    finally:
        stop_server(server)
    print(f"crash campaign {' '.join(server_args) or '(1 worker)'}: {figures.rounds} rounds, "
          f"{figures.crashes} crashes ({figures.at_crash_points} at crash points), "
          f"{figures.in_flight} uploads cut in flight, {figures.acknowledged} acknowledged, "
          f"{figures.tus_resumed} tus resumptions, {len(expected.tus)} tus uploads, lost {figures.lost}")
    assert figures.lost == 0
    assert figures.server_errors == []
    assert figures.crashes >= 3 and figures.acknowledged > 0
    return figures


def start_surviving_recovery(data_dir: Path, spec: str | None, figures: Figures,
                             server_args: tuple[str, ...]) -> LiveServer:
    """Start the next round's server; a crash point reached by start-up recovery itself is
    one more crash, and the server is started again without it."""
    try:
        return start(data_dir, *server_args, crash_at=spec)
    except AssertionError as error:
        if "crash point" not in str(error):
            raise
        figures.crashes += 1
        figures.at_crash_points += 1
        time.sleep(0.1)
        return start(data_dir, *server_args)


def test_a_crash_campaign_of_mixed_uploads_loses_nothing_acknowledged_and_leaves_no_garbage(
        tmp_path: Path) -> None:
    run_campaign(tmp_path, CAMPAIGN_SECONDS)


def test_the_crash_campaign_holds_with_two_workers(tmp_path: Path) -> None:
    run_campaign(tmp_path, CAMPAIGN_SECONDS / 2, "--workers", "2")
