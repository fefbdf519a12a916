"""Benchmark: segment counts over the 10-million-event store, side by side with the board.

    flock /tmp/bench.lock python bench/segments.py [--events 10000000] [--runs 5] [--store P]

Uses (or makes, as bench/board.py does) bench/out/board-<events>.duckdb and times, in this
process on a read-only connection, the board of the data's 30 days (the anchor: the
existing figure a segment count is compared with), a plain count of the sessions (a
floor), and the count of several past-behaviour segments (segments/query.py, one query
each), plus listing one segment's profiles. The target (issue 13): a count under 2 s.
Prints the best and the median of --runs; compare within one run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import duckdb

from board import DAYS, FIRST, bench_store, timed
from lull import board as figures
from lull.segments import query
from lull.segments.definition import Past, parse_past
from lull.store.projects import get_settings

UNTIL = FIRST + timedelta(days=DAYS - 1)
LONG = {"type": "event", "event": "Session Concluded", "at_least": 3,
        "where": [{"property": "Session Length", "op": ">", "value": 600}]}  # fmt: skip
SEGMENTS: dict[str, dict[str, Any]] = {
    "3+ sessions over 10 min, last 7 days": {"days": 7, "until": str(UNTIL), "conditions": [LONG]},
    "3+ sessions over 10 min, 30 days": {"days": 30, "until": str(UNTIL), "conditions": [LONG]},
    "jazz 5+ times and no ad, 30 days": {"days": 30, "until": str(UNTIL), "conditions": [
        {"type": "event", "event": "Song Played", "at_least": 5,
         "where": [{"property": "genre", "op": "=", "value": "jazz"}]},
        {"type": "event", "event": "Ad Played", "did": False}]},
    "any of: 10+ sessions, 1 h+ in sessions, a profile property, 30 days": {
        "days": 30, "until": str(UNTIL), "match": "any", "conditions": [
            {"type": "sessions", "at_least": 10}, {"type": "session_time", "at_least": 3600},
            {"type": "profile", "property": "plan", "op": "=", "value": "premium"}]},
    "six conditions in a nested group, 30 days": {"days": 30, "until": str(UNTIL), "conditions": [
        {"type": "event", "event": "App Opened", "at_least": 2},
        {"type": "event", "event": "Song Played", "at_least": 3, "at_most": 400,
         "where": [{"property": "duration_ms", "op": ">", "value": 200000}]},
        {"type": "group", "match": "any", "conditions": [
            {"type": "event", "event": "Song Liked"},
            {"type": "event", "event": "Song Shared"},
            {"type": "event", "event": "Search Performed", "at_least": 10}]},
        {"type": "session_time", "at_most": 36000}]},
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    a, store = bench_store(argv, __doc__)
    con = duckdb.connect(str(store), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    pid = 1
    settings = get_settings(con, pid)
    events = con.execute("SELECT count(*) FROM events").fetchone()
    sessions = con.execute("SELECT count(*) FROM sessions").fetchone()
    print(f"store: {store.stat().st_size / 1e9:.2f} GB, {events[0] if events else 0:,} events, "
          f"{sessions[0] if sessions else 0:,} sessions")  # fmt: skip
    cases: list[tuple[str, Callable[[], object]]] = [
        ("floor: count(*) of sessions",
         lambda: con.execute("SELECT count(*) FROM sessions WHERE concluded").fetchall()),
        ("anchor: board, 30 days, UTC",
         lambda: figures.board(con, pid, settings, UNTIL, DAYS)),
    ]  # fmt: skip

    def counting(d: Past) -> Callable[[], object]:
        return lambda: query.count(con, d, pid, settings.timezone, UNTIL)

    for name, raw in SEGMENTS.items():
        d = parse_past(raw)
        n = query.count(con, d, pid, settings.timezone, UNTIL)
        cases.append((f"segment count: {name} ({n:,} profiles)", counting(d)))
    first = parse_past(SEGMENTS["3+ sessions over 10 min, 30 days"])
    cases.append(("segment profiles, all rows: 3+ sessions over 10 min, 30 days",
                  lambda: query.profiles(con, first, pid, settings.timezone, UNTIL)))  # fmt: skip
    print(f"\nload average before: {os.getloadavg()[0]:.1f}")
    print(f"\n| step | best s | median s ({a.runs} runs) | CPU s of the best |")
    print("| --- | ---: | ---: | ---: |")
    for name, work in cases:
        best, median, cpu = timed(a.runs, work)
        print(f"| {name} | {best:.3f} | {median:.3f} | {cpu:.3f} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
