"""A lean HTTP load generator for bench/server.py: one process, uvloop, raw sockets.

    python bench/loadgen.py --port 8000 --key K [--connections 32] [--seconds 15] [--warmup 3]

Every connection is keep-alive and sends its next request as soon as the answer to the
previous one is in (a closed loop). The requests are built before the clock starts: a
pool of pre-encoded `POST /api/v1/events` requests of 100 canonical events each (~30 KB),
split at a marker that stands for the request number in every message id, so a request
is one `bytes.join` of its template with a 10-digit number (unique message ids at the
cost of one 30 KB copy). Answers are parsed minimally: the status line and
Content-Length. Prints "go" when it starts sending, then one JSON line with the counts
of the measured window (answers that came in after the warm-up, before the end), the
p50/p99 acknowledgement latency and the client's own CPU use.

`--requests N --distinct` sends N requests whose events each have a new profile (the
marker is in the profile id too), as fast as possible, for the open-sessions memory
measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import sys
import time
from typing import Any, cast

import uvloop

ID, TS = b"@@ID@@", b"@@TS@@"  # the request number; the request's epoch second
TS_STAND_IN = 9_876_543_210  # written where the epoch second goes, then made a marker
EVENTS_PER_REQUEST = 100

# name: (weight, properties maker); the properties a music app's SDK would send
GENRES = ("jazz", "rock", "pop", "hip-hop", "classical", "electronic", "indie", "latin")
SCREENS = ("home", "search", "library", "player", "playlist", "settings", "artist", "album")
DEVICES = (
    ("android", "Android 14", "Pixel 8"),
    ("android", "Android 13", "SM-S911B"),
    ("ios", "iOS 18.1", "iPhone15,3"),
    ("ios", "iOS 17.6", "iPhone14,5"),
    ("web", "Mac OS X 14.6", "Chrome 131"),
)
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_MX", "pt_BR", "ja_JP", "hi_IN")


def _song(rng: random.Random) -> dict[str, Any]:
    return {
        "song_id": f"s{rng.randrange(2_000_000)}",
        "genre": rng.choice(GENRES),
        "duration_ms": rng.randrange(90_000, 420_000),
        "position_ms": rng.randrange(0, 90_000),
        "playlist_id": f"pl{rng.randrange(50_000)}",
        "shuffle": rng.random() < 0.3,
    }


def _screen(rng: random.Random) -> dict[str, Any]:
    return {"screen": rng.choice(SCREENS), "referrer": rng.choice(SCREENS)}


def _search(rng: random.Random) -> dict[str, Any]:
    return {"query": rng.choice(("miles davis", "lofi beats", "taylor", "bach cello")), "hits": 25}


NAMES = (
    ("Song Played", 40, _song),
    ("Screen Viewed", 16, _screen),
    ("Song Skipped", 12, _song),
    ("Search Performed", 7, _search),
    ("App Opened", 6, _screen),
    ("Song Liked", 5, _song),
    ("Ad Impression", 5, lambda r: {"ad_id": f"ad{r.randrange(900)}", "slot": "banner"}),
    ("Song Shared", 3, _song),
    ("Playlist Created", 2, lambda r: {"playlist_id": f"pl{r.randrange(50_000)}", "tracks": 1}),
    ("Notification Clicked", 2, lambda r: {"campaign": f"c{r.randrange(40)}"}),
    ("App Backgrounded", 2, _screen),
)


def _context(profile: int) -> dict[str, Any]:
    platform, os_name, model = DEVICES[profile % len(DEVICES)]
    return {
        "app_version": f"4.{profile % 13}.{profile % 5}",
        "platform": platform,
        "os": os_name,
        "device": model,
        "locale": LOCALES[profile % len(LOCALES)],
        "network": ("wifi", "cellular")[profile % 3 == 0],
    }


def templates(
    count: int, profiles: int, seed: int, prefix: str, distinct: bool
) -> list[list[bytes]]:
    """`count` request templates: the HTTP request as a list whose odd items are the
    markers ID (in every message id, and profile id if `distinct`) and TS (the first ten
    digits of every event's epoch-ms time: the events of a request are within a second)."""
    rng = random.Random(seed)
    cum = list(itertools.accumulate(1.0 / (i + 10) for i in range(profiles)))  # heavy users
    names = [n for n, _, _ in NAMES]
    name_weights = [w for _, w, _ in NAMES]
    makers = {n: m for n, _, m in NAMES}
    out = []
    for t in range(count):
        users = rng.choices(range(profiles), cum_weights=cum, k=EVENTS_PER_REQUEST)
        spread = sorted(rng.randrange(0, 1000) for _ in range(EVENTS_PER_REQUEST))
        events = []
        for i in range(EVENTS_PER_REQUEST):
            name = rng.choices(names, weights=name_weights)[0]
            profile = f"o@@ID@@-{i:02d}" if distinct else f"user-{users[i]:06d}"
            properties = makers[name](rng) | _context(users[i])
            events.append(
                {
                    "message_id": f"{prefix}-{t:05d}-@@ID@@-{i:02d}",
                    "profile_id": profile,
                    "name": name,
                    "ts": TS_STAND_IN * 1000 + spread[i],
                    "properties": properties,
                }
            )
        body = json.dumps(events, separators=(",", ":")).encode()
        body = body.replace(b"%d" % TS_STAND_IN, TS)
        length = len(body) - (len(ID) - 10) * body.count(ID) - (len(TS) - 10) * body.count(TS)
        head = (
            b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer @@KEY@@\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % length
        )
        parts = re.split(b"(" + re.escape(ID) + b"|" + re.escape(TS) + b")", head + body)
        slots = ([ID, ID, TS] if distinct else [ID, TS]) * EVENTS_PER_REQUEST
        assert parts[1::2] == slots, "a marker is out of place"
        out.append(parts)
    return out


class Stats:
    def __init__(self, warm_end: float, end: float) -> None:
        self.warm_end, self.end = warm_end, end
        self.latencies: list[float] = []
        self.events = 0
        self.statuses: dict[int, int] = {}
        self.sent = 0
        self.errors: list[str] = []


class Conn(asyncio.Protocol):
    """One keep-alive connection in a closed loop."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.buf = bytearray()
        self.started = 0.0
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        request = self.load.next_request()
        if request is None:
            self.transport.close()
            return
        self.started = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        at = buf.find(b"content-length:", 0, end)
        if at < 0:
            at = buf.lower().find(b"content-length:", 0, end)
        if at < 0:  # chunked answers are not read here
            raise ValueError(f"no Content-Length in {bytes(buf[:end])!r}")
        length = int(buf[at + 15 : buf.find(b"\r\n", at)])
        total = end + 4 + length
        if len(buf) < total:
            return
        now = time.perf_counter()
        status = int(buf[9:12])
        del buf[:total]
        self.load.answered(status, now - self.started, now)
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.load.stats.errors.append(repr(exc))
        if not self.done.done():
            self.done.set_result(None)


class Load:
    def __init__(
        self, pool: list[list[bytes]], stats: Stats, limit: int | None, key: bytes
    ) -> None:
        self.pool = [[t[0].replace(b"@@KEY@@", key), *t[1:]] for t in pool]
        self.per_event = len(pool[0]) // 2 // EVENTS_PER_REQUEST  # markers per event
        self.stats = stats
        self.limit = limit
        self.n = 0

    def next_request(self) -> bytes | None:
        if self.limit is not None:
            if self.n >= self.limit:
                return None
        elif time.perf_counter() >= self.stats.end:
            return None
        self.n += 1
        self.stats.sent += 1
        parts = self.pool[self.n % len(self.pool)].copy()
        rid, second = b"%010d" % self.n, b"%d" % (time.time() - 1)  # a second before sending
        parts[1::2] = ([rid, rid, second] if self.per_event == 3 else [rid, second]) * (
            EVENTS_PER_REQUEST
        )
        return b"".join(parts)

    def answered(self, status: int, latency: float, now: float) -> None:
        s = self.stats
        if self.limit is None and not (s.warm_end <= now < s.end):
            return
        s.statuses[status] = s.statuses.get(status, 0) + 1
        if 200 <= status < 300:
            s.events += EVENTS_PER_REQUEST
            s.latencies.append(latency)


def cpu() -> float:
    t = os.times()
    return t.user + t.system


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"{args.run}{os.getpid():x}"
    pool = templates(args.pool, args.profiles, args.seed, prefix, args.distinct)
    size = int(pool[0][0].split(b"Content-Length: ")[1].split(b"\r\n")[0])
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    warm_end = start + (0 if args.requests else args.warmup)
    end = warm_end + (1e9 if args.requests else args.seconds)
    stats = Stats(warm_end, end)
    load = Load(pool, stats, args.requests, args.key.encode())
    print("go", flush=True)
    window: dict[str, float] = {}

    def mark(name: str) -> None:
        window[name] = cpu()

    mark("start")
    loop.call_at(loop.time() + (warm_end - start), mark, "warm")
    conns = []
    for _ in range(args.connections):
        _, conn = await loop.create_connection(lambda: Conn(load), "127.0.0.1", args.port)
        conns.append(conn)
    waited = asyncio.gather(*(c.done for c in conns))
    try:
        if args.requests:
            await waited
        else:
            await asyncio.wait_for(asyncio.shield(waited), end - time.perf_counter() + 30)
    except TimeoutError:
        stats.errors.append("answers still outstanding 30 s after the end")
    finished = time.perf_counter()
    mark("end")
    lat = sorted(stats.latencies)
    took = (finished - start) if args.requests else args.seconds
    cpu_used = window["end"] - window.get("warm", window["start"])
    return {
        "events": stats.events,
        "seconds": took,
        "events_per_s": stats.events / took,
        "requests_per_s": len(lat) / took,
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else None,
        "max_ms": lat[-1] * 1000 if lat else None,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "errors": stats.errors[:5],
        "body_bytes": size,
        "client_cpu": cpu_used / (finished - warm_end if not args.requests else took),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", default="none")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--profiles", type=int, default=20_000)
    p.add_argument("--pool", type=int, default=512, help="request templates")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--run", default="b", help="message id prefix")
    p.add_argument("--requests", type=int, default=None, help="send this many, then stop")
    p.add_argument("--distinct", action="store_true", help="a new profile for every event")
    args = p.parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
