"""A real HTTP webhook receiver for tests: records every delivery, answers as told."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import wait_until


@dataclass
class Delivery:
    type: str
    upload: dict[str, Any]
    headers: dict[str, str]


# (event type, upload payload) -> (status, JSON answer or None)
Answer = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any] | None]]


@dataclass
class HookReceiver:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    answer: Answer = lambda _type, _upload: (200, None)
    # Closed: every request waits here until the test opens it (a slow receiver).
    gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events_of(self, upload_id: str) -> list[str]:
        with self.lock:
            return [d.type for d in self.deliveries if d.upload["id"] == upload_id]

    def of_type(self, event_type: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.type == event_type]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0) -> bool:
        return wait_until(condition, timeout)


@contextmanager
def hook_receiver() -> Iterator[HookReceiver]:
    receiver = HookReceiver(url="")
    receiver.gate.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length))
            with receiver.lock:
                receiver.deliveries.append(Delivery(body["type"], body["upload"],
                                                    {k.lower(): v for k, v in self.headers.items()}))
            receiver.gate.wait(60)
            status, answer = receiver.answer(body["type"], body["upload"])
            payload = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.gate.set()
        server.shutdown()
        server.server_close()
