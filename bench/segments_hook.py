"""Benchmark: what the live segments' hook costs the live engine's writer thread.

    flock /tmp/bench.lock python bench/segments_hook.py [--store P] [--runs 20]

The live engine calls `Watcher.stored` once per committed group (up to GROUP_EVENTS
events). This times that call on a group of 50,000 real events (the first of the 10M
store bench/board.py makes) with no live segment, with one whose event is not in the
group, and with one on `Song Played` (about 19,000 of them: candidates queued, most
dropped as the queue holds 10,000; the deliveries themselves run on the worker's thread
and are not timed). Side by side: the group's commit into a DuckDB table, the work the
hook rides on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from board import HERE
from lull.segments.live import Watcher
from lull.server.live import GROUP_EVENTS
from lull.store.schema import SCHEMA


def timed(runs: int, work: Callable[[], object]) -> tuple[float, float]:
    took = []
    for _ in range(runs):
        t = time.perf_counter()
        work()
        took.append(time.perf_counter() - t)
    return min(took), statistics.median(took)


def watcher(event: str | None) -> Watcher:
    """A watcher over an in-memory store holding one live segment on `event` (or none)."""
    con = duckdb.connect()
    con.execute(SCHEMA)
    if event is not None:
        hook = {"event": event, "where": [], "first_time": False, "webhook": "http://127.0.0.1:9/"}
        definition = json.dumps(hook)
        con.execute(
            "INSERT INTO segments VALUES (1, 'hook', 'live', ?, 'http://127.0.0.1:9/', 's', 0)",
            [definition],
        )
    return Watcher(con)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--store", type=Path, default=HERE / "out" / "board-10000000.duckdb")
    p.add_argument("--runs", type=int, default=20)
    a = p.parse_args(argv)
    src = duckdb.connect(str(a.store), read_only=True)
    group: pa.Table = src.sql(
        f"SELECT * FROM events ORDER BY seq LIMIT {GROUP_EVENTS}"
    ).to_arrow_table()
    src.close()
    sink = duckdb.connect()
    sink.register("arrived", group)
    sink.execute("CREATE TABLE events AS SELECT * FROM arrived LIMIT 0")

    def commit() -> None:
        sink.execute("BEGIN")
        sink.execute("INSERT INTO events SELECT * FROM arrived")
        sink.execute("ROLLBACK")

    none, other, songs = watcher(None), watcher("Purchase Completed"), watcher("Song Played")
    print(f"a group of {group.num_rows:,} events\n")
    print(f"| step | best ms | median ms ({a.runs} runs) |")
    print("| --- | ---: | ---: |")
    cases: list[tuple[str, Callable[[], object]]] = [
        ("the group inserted into a DuckDB table (rolled back)", commit),
        ("hook, no live segment", lambda: none.stored([group])),
        ("hook, one live segment, its event not in the group", lambda: other.stored([group])),
        ("hook, one live segment on Song Played", lambda: songs.stored([group])),
    ]
    for name, work in cases:
        best, median = timed(a.runs, work)
        print(f"| {name} | {best * 1000:.3f} | {median * 1000:.3f} |", flush=True)
    songs.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
