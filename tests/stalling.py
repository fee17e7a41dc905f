"""A TCP server on 127.0.0.1 that accepts connections and then stalls: it never answers, or trickles a body forever."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from types import TracebackType

TRICKLE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 1000000000\r\n\r\nid\n"


class StallingServer:
    """Counts the requests it receives. `trickle=False`: never sends a byte. `trickle=True`: sends a 200 with a
    1 GB Content-Length, then two bytes every `interval` seconds, forever. Everything stops on exit."""

    def __init__(self, *, trickle: bool = False, interval: float = 0.05) -> None:
        self.trickle = trickle
        self.interval = interval
        self.requests = 0
        self.got_request = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> StallingServer:
        self._spawn(self._accept)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.05)
            head = b""
            while b"\r\n\r\n" not in head and not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                head += data
            with self._lock:
                self.requests += 1
            self.got_request.set()
            if self.trickle:
                try:
                    conn.sendall(TRICKLE_HEAD)
                    while not self._stop.wait(self.interval):
                        conn.sendall(b"1\n")
                except OSError:  # the client gave up and closed the connection
                    return
            self._stop.wait()
