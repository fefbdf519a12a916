"""Benchmark: candidates for the durable ingest log, side by side in one run.

    python bench/ingest_log.py [--appenders 8] [--batches 400] [--batch 1000] [--rounds 3]

Each candidate takes the same validated events (columns of Python values, ~1,000 events a
request, as a request handler holds them) from `--appenders` threads at once, and answers
an append only once its events are durable (fsynced); every candidate commits in groups
(one writer thread takes all appends waiting, writes them together, one fsync):

- arrow-frames: lull.store.log.IngestLog, Arrow IPC record batch messages in CRC-32
  frames, in a plain file, fdatasync;
- sqlite-rows: SQLite in WAL mode, synchronous=FULL, one row per event, one transaction
  per group (SQLite's WAL frames carry its checksums);
- sqlite-blob: the same, one row per append holding the Arrow IPC batch as a blob;
- ndjson-crc: msgspec NDJSON lines, one CRC-32 frame per append, a plain file, fdatasync;
- arrow-prebuilt: arrow-frames with the record batches made before the clock starts (the
  log's own cost, without turning Python values into Arrow).

Prints durable events/s, fsyncs (group commits), events per fsync, append latency p50/p99,
and the speed of reading everything back as Arrow (replay), with ratios to arrow-frames;
the median of `--rounds` interleaved runs (the machine is shared: compare within a run).
`--dir` should be on the disk the server will use (default: a temporary directory under
the current one, not /tmp, which may be tmpfs where fsync costs nothing).
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import shutil
import sqlite3
import statistics
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from lull.store.log import EVENT_SCHEMA, IngestLog, read_log

Columns = dict[str, list[Any]]
NAMES = ["Song Played", "Song Skipped", "Search", "Page Viewed", "Playlist Opened"]


def make_requests(count: int, size: int, seed: int = 7) -> list[Columns]:
    rnd = random.Random(seed)
    out: list[Columns] = []
    for r in range(count):
        base = 1_790_000_000_000 + r * 1000
        out.append(
            {
                "project": ["demo"] * size,
                "message_id": [f"{rnd.getrandbits(64):016x}-{r}-{i}" for i in range(size)],
                "profile_id": [f"u-{rnd.randrange(200_000)}" for _ in range(size)],
                "name": [rnd.choice(NAMES) for _ in range(size)],
                "ts": [base - rnd.randrange(5000) for _ in range(size)],
                "source": [rnd.choice(("web", "ios", "android")) for _ in range(size)],
                "received_at": [base] * size,
                "sent_at": [base - 20 if i % 2 else None for i in range(size)],
                "properties": [
                    f'{{"genre": "{rnd.choice(("jazz", "rock", "pop"))}", "position": {i}}}'
                    for i in range(size)
                ],
                "kind": [0] * size,
            }
        )
    return out


class Candidate:
    name = ""
    fsyncs = 0

    def prepare(self, requests: list[Columns]) -> None: ...

    def open(self, directory: Path) -> None: ...

    def append(self, columns: Columns) -> None:  # returns once durable
        raise NotImplementedError

    def close(self) -> None: ...

    def replay(self, directory: Path) -> int:  # events read back
        raise NotImplementedError


class ArrowFrames(Candidate):
    name = "arrow-frames"

    def open(self, directory: Path) -> None:
        self.log = IngestLog(directory)

    def append(self, columns: Columns) -> None:
        self.log.append(pa.record_batch(columns, schema=EVENT_SCHEMA))

    def close(self) -> None:
        self.fsyncs = self.log.fsyncs
        self.log.close()

    def replay(self, directory: Path) -> int:
        table = pa.Table.from_batches([r.batch for r in read_log(directory, "main")], EVENT_SCHEMA)
        return int(table.num_rows)


class ArrowPrebuilt(ArrowFrames):
    """The log alone: the batches are made before the clock starts."""

    name = "arrow-prebuilt"

    def prepare(self, requests: list[Columns]) -> None:
        self.built = {id(c): pa.record_batch(c, schema=EVENT_SCHEMA) for c in requests}

    def append(self, columns: Columns) -> None:
        self.log.append(self.built[id(columns)])


class GroupWriter:
    """A writer thread that commits whatever is waiting as one group."""

    def __init__(self, commit: Callable[[list[Any]], None]) -> None:
        self.commit = commit
        self.fsyncs = 0
        self.queue: queue.SimpleQueue[tuple[Any, Future[None]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def submit(self, item: Any) -> None:
        future: Future[None] = Future()
        self.queue.put((item, future))
        future.result()

    def run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            group = [first]
            while True:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.queue.put(None)
                    break
                group.append(more)
            self.commit([item for item, _ in group])
            self.fsyncs += 1
            for _, future in group:
                future.set_result(None)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


def _sqlite(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")  # NORMAL in WAL is not durable at commit
    return con


class SqliteRows(Candidate):
    name = "sqlite-rows"

    def open(self, directory: Path) -> None:
        self.path = directory / "log.sqlite"
        self.con = _sqlite(self.path)
        cols = ", ".join(EVENT_SCHEMA.names)
        self.con.execute(f"CREATE TABLE events (id INTEGER PRIMARY KEY, {cols})")
        marks = ", ".join("?" * len(EVENT_SCHEMA.names))
        insert = f"INSERT INTO events ({cols}) VALUES ({marks})"

        def commit(group: list[Columns]) -> None:
            self.con.execute("BEGIN")
            for columns in group:
                self.con.executemany(insert, zip(*columns.values(), strict=True))
            self.con.execute("COMMIT")

        self.writer = GroupWriter(commit)

    def append(self, columns: Columns) -> None:
        self.writer.submit(columns)

    def close(self) -> None:
        self.writer.close()
        self.fsyncs = self.writer.fsyncs
        self.con.close()

    def replay(self, directory: Path) -> int:
        con = sqlite3.connect(self.path)
        rows = con.execute(f"SELECT {', '.join(EVENT_SCHEMA.names)} FROM events").fetchall()
        table = pa.Table.from_pylist(
            [dict(zip(EVENT_SCHEMA.names, r, strict=True)) for r in rows], EVENT_SCHEMA
        )
        con.close()
        return int(table.num_rows)


class SqliteBlob(Candidate):
    name = "sqlite-blob"

    def open(self, directory: Path) -> None:
        self.path = directory / "log.sqlite"
        self.con = _sqlite(self.path)
        self.con.execute("CREATE TABLE frames (id INTEGER PRIMARY KEY, batch BLOB)")

        def commit(group: list[bytes]) -> None:
            self.con.execute("BEGIN")
            self.con.executemany("INSERT INTO frames (batch) VALUES (?)", [(b,) for b in group])
            self.con.execute("COMMIT")

        self.writer = GroupWriter(commit)

    def append(self, columns: Columns) -> None:
        payload = pa.record_batch(columns, schema=EVENT_SCHEMA).serialize()
        self.writer.submit(payload.to_pybytes())

    def close(self) -> None:
        self.writer.close()
        self.fsyncs = self.writer.fsyncs
        self.con.close()

    def replay(self, directory: Path) -> int:
        con = sqlite3.connect(self.path)
        batches = [
            pa.ipc.read_record_batch(pa.py_buffer(b), EVENT_SCHEMA)
            for (b,) in con.execute("SELECT batch FROM frames ORDER BY id")
        ]
        con.close()
        return int(pa.Table.from_batches(batches, EVENT_SCHEMA).num_rows)


def _field(f: pa.Field) -> tuple[str, Any]:
    if f.name == "properties":
        return f.name, msgspec.Raw  # JSON text, written as it is
    return f.name, (str if pa.types.is_string(f.type) else int) | None


# one NDJSON line per event, with the log's columns (whatever EVENT_SCHEMA holds)
_Line = msgspec.defstruct("_Line", [_field(f) for f in EVENT_SCHEMA])
_PROPS = EVENT_SCHEMA.names.index("properties")


def _line(row: tuple[Any, ...]) -> Any:
    values = list(row)
    values[_PROPS] = msgspec.Raw(values[_PROPS].encode())
    return _Line(*values)


_FRAME = struct.Struct("<II")  # length, crc32


class NdjsonCrc(Candidate):
    name = "ndjson-crc"

    def open(self, directory: Path) -> None:
        self.path = directory / "log.ndjson"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.encode = msgspec.json.Encoder().encode

        def commit(group: list[bytes]) -> None:
            os.write(self.fd, b"".join(group))
            os.fdatasync(self.fd)

        self.writer = GroupWriter(commit)

    def append(self, columns: Columns) -> None:
        lines = b"".join(
            self.encode(_line(row)) + b"\n" for row in zip(*columns.values(), strict=True)
        )
        self.writer.submit(_FRAME.pack(len(lines), zlib.crc32(lines)) + lines)

    def close(self) -> None:
        self.writer.close()
        self.fsyncs = self.writer.fsyncs
        os.close(self.fd)

    def replay(self, directory: Path) -> int:
        data = self.path.read_bytes()
        decode = msgspec.json.Decoder(_Line).decode_lines
        at, count, batches = 0, 0, []
        while at < len(data):
            length, crc = _FRAME.unpack_from(data, at)
            body = data[at + 8 : at + 8 + length]
            assert zlib.crc32(body) == crc
            lines: list[Any] = decode(body)
            batches.append(
                pa.RecordBatch.from_pylist(
                    [
                        {f: getattr(x, f) for f in EVENT_SCHEMA.names if f != "properties"}
                        | {"properties": bytes(x.properties).decode()}
                        for x in lines
                    ],
                    EVENT_SCHEMA,
                )
            )
            count += len(lines)
            at += 8 + length
        return count


def run(
    candidate: Candidate, requests: list[Columns], appenders: int, root: Path
) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix=f"{candidate.name}-", dir=root))
    candidate.prepare(requests)
    candidate.open(directory)
    latencies: list[float] = []
    share = [requests[i::appenders] for i in range(appenders)]

    def work(mine: list[Columns]) -> None:
        for columns in mine:
            t = time.perf_counter()
            candidate.append(columns)
            latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=work, args=(s,)) for s in share]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    candidate.close()
    size = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
    began = time.perf_counter()
    replayed = candidate.replay(directory)
    replay = time.perf_counter() - began
    events = sum(len(c["message_id"]) for c in requests)
    assert replayed == events, (candidate.name, replayed, events)
    shutil.rmtree(directory)
    latencies.sort()
    return {
        "name": candidate.name,
        "events_s": events / elapsed,
        "fsyncs": candidate.fsyncs,
        "per_fsync": events / max(candidate.fsyncs, 1),
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
        "bytes_event": size / events,
        "replay_s": events / replay,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appenders", type=int, default=8)
    parser.add_argument("--batches", type=int, default=400, help="appends in all")
    parser.add_argument("--batch", type=int, default=1000, help="events per append")
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--only", default="", help="comma-separated candidate names")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    args = parser.parse_args()
    requests = make_requests(args.batches, args.batch)
    # pyarrow's first conversion of Python lists pays a one-time start-up (about a second
    # here): pay it before any candidate is timed.
    pa.record_batch(requests[0], schema=EVENT_SCHEMA).serialize()
    candidates: list[Candidate] = [
        ArrowFrames(),
        SqliteRows(),
        SqliteBlob(),
        NdjsonCrc(),
        ArrowPrebuilt(),
    ]
    if args.only:
        candidates = [c for c in candidates if c.name in args.only.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bench-ingest-log-", dir=args.dir))
    rounds: dict[str, list[dict[str, Any]]] = {c.name: [] for c in candidates}
    try:
        for i in range(args.rounds):  # interleaved, each round in another order
            for c in candidates[i % len(candidates) :] + candidates[: i % len(candidates)]:
                rounds[c.name].append(run(type(c)(), requests, args.appenders, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # the median round of each candidate (by events/s)
    results = [sorted(r, key=lambda x: x["events_s"])[len(r) // 2] for r in rounds.values()]
    print(
        f"{args.batches} appends of {args.batch} events from {args.appenders} threads, "
        f"durable (fsync) on {args.dir}, {os.cpu_count()} cores, median of {args.rounds}",
        file=sys.stderr,
    )
    first = results[0]["events_s"]
    print(
        f"{'candidate':<14}{'events/s':>12}{'ratio':>7}{'fsyncs':>8}{'ev/fsync':>10}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'B/event':>9}{'replay ev/s':>13}"
    )
    for r in results:
        print(
            f"{r['name']:<14}{r['events_s']:>12,.0f}{r['events_s'] / first:>7.2f}"
            f"{r['fsyncs']:>8}{r['per_fsync']:>10,.0f}{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}"
            f"{r['bytes_event']:>9.0f}{r['replay_s']:>13,.0f}"
        )


if __name__ == "__main__":
    main()
