"""A webhook receiver on 127.0.0.1 for the live segments' tests: a real HTTP server in a
thread that keeps what it was sent and can answer the first few requests with a 500."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    got: list[Received] = field(default_factory=list)
    failing: int = 0  # answer this many more requests with a 500
    refused: int = 0  # how many were answered with a 500

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        """The first `n` requests answered 2xx, once they came."""
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            assert time.monotonic() < deadline, f"{len(self.got)} of {n} deliveries came"
            time.sleep(0.05)
        return self.got[:n]


@contextmanager
def receiver(path: str = "/hook") -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            r = box[0]
            if r.failing > 0:
                r.failing -= 1
                r.refused += 1
                self.send_response(500)
                self.end_headers()
                return
            r.got.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{httpd.server_address[1]}{path}"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
