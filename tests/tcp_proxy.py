"""A loopback TCP proxy for tests that need a network fault between a real client and the
server: cut every connection, or stall it (a dead peer that never says so), once a number of
bytes went from client to server."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator


class FaultyProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._budget: int | None = None  # client->server bytes left before the fault
        self._mode = "cut"
        self._released = threading.Event()
        self.faults = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, nbytes: int) -> None:
        """Close both sides of the connection that carries byte number `nbytes`, once."""
        with self._lock:
            self._budget, self._mode = nbytes, "cut"

    def stall_after(self, nbytes: int) -> None:
        """Stop forwarding (both sockets stay open) once `nbytes` went through, until `release`."""
        with self._lock:
            self._budget, self._mode = nbytes, "stall"
            self._released.clear()

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, upward: bool) -> None:
        with contextlib.suppress(OSError):
            for chunk in _chunks(source):
                if upward:
                    chunk, fault = self._spend(chunk)
                    if chunk:
                        target.sendall(chunk)
                    if fault == "cut":
                        for sock in (source, target):
                            _reset(sock)
                        return
                    if fault == "stall":
                        self._released.wait()
                        return
                else:
                    target.sendall(chunk)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def _spend(self, chunk: bytes) -> tuple[bytes, str | None]:
        with self._lock:
            if self._budget is None:
                return chunk, None
            if len(chunk) < self._budget:
                self._budget -= len(chunk)
                return chunk, None
            allowed, self._budget = chunk[:self._budget], None
            self.faults += 1
            return allowed, self._mode


def _chunks(sock: socket.socket) -> Iterator[bytes]:
    while chunk := sock.recv(256 * 1024):
        yield chunk


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a dropped connection looks to both ends (SO_LINGER 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
