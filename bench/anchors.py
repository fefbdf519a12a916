"""The anchor servers of bench/server.py: what an ingest endpoint costs before lull's work.

    python bench/anchors.py decode --port 8001
    python bench/anchors.py duckdb --port 8002 --db FILE
    python bench/anchors.py sink --port 8003

Both are uvicorn, one process, with the uvloop and httptools that `lull serve` runs on
(uvicorn's defaults, as in `lull serve`), and a plain ASGI app that reads the body,
`json.loads` it and answers 200 `{"accepted": n}`:

- decode: nothing more;
- duckdb: the simple, obvious durable insert: the events as an Arrow table (properties
  as JSON text), inserted into a table of a DuckDB file, one transaction and commit per
  request, on one connection owned by a single writer thread (requests wait their turn).

`sink` is no HTTP server: it skips each request by its Content-Length and answers a fixed
200, to see what the load generator alone can reach.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import duckdb
import httptools  # noqa: F401  (uvicorn's http="auto" picks it, as for lull serve)
import pyarrow as pa
import uvicorn
import uvloop  # uvicorn's loop="auto" picks it, as for lull serve

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Insert = Callable[[list[dict[str, Any]]], None]


def make_app(insert: Insert | None) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    writer = ThreadPoolExecutor(max_workers=1)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":  # GET /healthz and the like
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"2")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        events = json.loads(b"".join(chunks))
        if insert is not None:
            await asyncio.get_running_loop().run_in_executor(writer, insert, events)
        body = b'{"accepted":%d}' % len(events)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def duckdb_insert(path: str) -> Insert:
    con = duckdb.connect(path)
    con.execute(
        """CREATE TABLE IF NOT EXISTS events (message_id VARCHAR, profile_id VARCHAR,
        name VARCHAR, ts BIGINT, received_at BIGINT, properties VARCHAR)"""
    )

    def insert(events: list[dict[str, Any]]) -> None:
        now = time.time_ns() // 1_000_000
        batch = pa.table(
            {
                "message_id": [e["message_id"] for e in events],
                "profile_id": [e["profile_id"] for e in events],
                "name": [e["name"] for e in events],
                "ts": pa.array([e["ts"] for e in events], pa.int64()),
                "received_at": pa.array([now] * len(events), pa.int64()),
                "properties": [json.dumps(e.get("properties")) for e in events],
            }
        )
        con.register("batch", batch)
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO events SELECT * FROM batch")
        con.execute("COMMIT")
        con.unregister("batch")

    return insert


class Sink(asyncio.Protocol):
    """No HTTP server at all: skips each request by its Content-Length, answers 200. Only
    to see how fast the load generator itself can go (server S)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            at = self.buf.lower().find(b"content-length:", 0, end)
            length = int(self.buf[at + 15 : self.buf.find(b"\r\n", at)]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[: end + 4 + length]
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


async def sink(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("kind", choices=("decode", "duckdb", "sink"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", help="the DuckDB file (duckdb)")
    a = p.parse_args(argv)
    if a.kind == "duckdb" and not a.db:
        p.error("duckdb needs --db")
    if a.kind == "sink":
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(sink(a.port))
        return 0
    app = make_app(duckdb_insert(a.db) if a.kind == "duckdb" else None)
    print(f"anchor {a.kind}: serving http://127.0.0.1:{a.port}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
