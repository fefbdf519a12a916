"""Load on `lull serve`: batches of 100 events over HTTP from a separate process.

Measures acknowledged (committed) events per second with p50/p99 acknowledgement
latency, then the server's memory once it holds 1,000,000 open sessions.

    .venv/bin/python bench/server.py [--seconds 20] [--connections 8] [--open 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LULL = str(Path(sys.executable).with_name("lull"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [LULL, "--db", str(db), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("server exited: " + (proc.stderr.read() if proc.stderr else ""))
        lines.append(line)
        if line.startswith("}"):
            break
    keys = json.loads("".join(lines[1:]))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    return proc, str(keys["keys"]["android"])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Load:
    def __init__(self, port: int, key: str, profiles: int) -> None:
        self.port, self.key, self.profiles = port, key, profiles
        self.sent = 0
        self.latencies: list[float] = []
        self.events = 0
        self.errors = 0

    def body(self, batch: int, distinct: bool) -> bytes:
        now = time.time_ns() // 1_000_000
        parts = []
        for i in range(100):
            n = batch * 100 + i
            profile = n if distinct else (n * 7919) % self.profiles
            parts.append(
                f'{{"message_id":"b{n}","profile_id":"u{profile}","name":"Song Played",'
                f'"ts":{now - 100 + i},"properties":{{"genre":"jazz","track":{n % 9973},'
                f'"position_ms":{n * 31 % 240000},"device":"pixel-8","app":"4.2.1"}}}}'
            )
        return ("[" + ",".join(parts) + "]").encode()

    def request(self, body: bytes) -> bytes:
        head = (
            f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def worker(self, stop: float, limit: int | None, distinct: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        while time.perf_counter() < stop and (limit is None or self.sent < limit):
            batch = self.sent
            self.sent += 1
            data = self.request(self.body(batch, distinct))
            started = time.perf_counter()
            writer.write(data)
            await writer.drain()
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if b" 200 " in status:
                self.latencies.append(time.perf_counter() - started)
                self.events += 100
            else:
                self.errors += 1
        writer.close()

    async def run(
        self, seconds: float, connections: int, limit: int | None, distinct: bool
    ) -> float:
        started = time.perf_counter()
        stop = started + seconds
        await asyncio.gather(*(self.worker(stop, limit, distinct) for _ in range(connections)))
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--profiles", type=int, default=200_000)
    parser.add_argument("--open", type=int, default=1_000_000, help="open sessions to hold")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server, key = start_server(Path(tmp) / "bench.duckdb", port)
        try:
            load = Load(port, key, args.profiles)
            took = asyncio.run(load.run(args.seconds, args.connections, None, False))
            lat = sorted(load.latencies)
            p50 = statistics.median(lat) * 1000 if lat else float("nan")
            p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
            print(
                f"sustained: {load.events / took:,.0f} events/s acknowledged "
                f"({load.events:,} events in {took:.1f} s, {args.connections} connections, "
                f"{load.errors} errors); ack latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            )
            print(f"server RSS after the load: {rss_mb(server.pid):,.0f} MB")
            held = Load(port, key, args.profiles)
            held.sent = 10_000_000  # fresh message ids and profiles
            start = held.sent
            took = asyncio.run(held.run(3600, args.connections, start + args.open // 100, True))
            print(
                f"open sessions: {held.events:,} more profiles with one event each in "
                f"{took:.1f} s; server RSS now {rss_mb(server.pid):,.0f} MB "
                f"(target <= 1024 MB with 1,000,000 open)"
            )
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
