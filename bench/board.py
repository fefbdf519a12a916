"""Benchmark: the session board and the what-if preview over a 10-million-event store.

    python bench/board.py [--events 10000000] [--profiles 200000] [--runs 5] [--store P]

Makes the store once and keeps it (the events from bench/generate.py, cached under
bench/out/; `lull settings --sessions on` and `lull import` into
bench/out/board-<events>.duckdb), then times, in this process on a read-only
connection, each figure of the board for the data's 30 days, the whole board (all
sources, one source; UTC and a zone with DST in the range), and the what-if preview
for 30 and 7 days. Side by side in the same run: the per-day figure the way it was
computed before (DuckDB's `AT TIME ZONE` on every row), and a plain scan of the
sessions table (a floor). Prints the best and the median of --runs; machines are shared
and noisy, so compare within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb

import sessionize
from lull import board as figures
from lull.days import Days
from lull.store.projects import get_settings
from lull.whatif import preview

HERE = Path(__file__).resolve().parent
LULL = str(Path(sys.executable).with_name("lull"))
FIRST = date(2026, 10, 1)  # bench/generate.py's default start
DAYS = 30


def make_store(events: int, profiles: int, store: Path) -> None:
    if store.exists():
        print(f"reusing the store {store}")
        return
    data = sessionize.data_file(HERE / "out", events, profiles, DAYS, 1)
    print(f"importing {data.name} into {store} ...")
    started = time.perf_counter()
    for args in (["settings", "--sessions", "on"], ["import", str(data)]):
        subprocess.run([LULL, "--db", str(store), *args], check=True, stdout=subprocess.DEVNULL)
    print(f"  done in {time.perf_counter() - started:.1f} s")


def timed(runs: int, work: Callable[[], object]) -> tuple[float, float, float]:
    """Best and median wall seconds, and the CPU seconds (all of DuckDB's threads) of the
    best run: on a shared machine the CPU time says what the work costs."""
    runs_: list[tuple[float, float]] = []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        runs_.append((time.perf_counter() - wall, time.process_time() - cpu))
    best = min(runs_)
    return best[0], statistics.median(w for w, _ in runs_), best[1]


def bench_store(argv: list[str] | None, doc: str | None) -> tuple[argparse.Namespace, Path]:
    """The options every benchmark on the 10M store takes, and that store (made once)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--profiles", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--store", type=Path)
    a = p.parse_args(argv)
    store = a.store or HERE / "out" / f"board-{a.events}.duckdb"
    make_store(a.events, a.profiles, store)
    return a, store


def main(argv: list[str] | None = None) -> int:
    a, store = bench_store(argv, __doc__)
    con = duckdb.connect(str(store), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    pid = 1
    settings = get_settings(con, pid)
    paris = replace(settings, timezone="Europe/Paris")  # DST ends on 2026-10-25
    until = FIRST + timedelta(days=DAYS - 1)
    span = figures.Span(pid, Days("UTC", FIRST, until))
    sessions = con.execute("SELECT count(*) FROM sessions").fetchone()
    result = figures.board(con, pid, settings, until, DAYS)
    print(f"store: {store.stat().st_size / 1e9:.2f} GB, {sessions[0] if sessions else 0:,} "
          f"sessions; the board counts {result['sessions']:,} in {DAYS} days")  # fmt: skip
    old_per_day = f"""SELECT (epoch_ms(last_ts)::TIMESTAMPTZ AT TIME ZONE 'UTC')::DATE AS d,
                             count(*), sum((last_ts - first_ts) // 1000)
                      FROM sessions WHERE project_id = {pid} AND concluded
                      AND d BETWEEN DATE '{FIRST}' AND DATE '{until}' GROUP BY 1"""
    cases: list[tuple[str, Callable[[], object]]] = [
        ("floor: count(*) of sessions", lambda: con.execute(
            "SELECT count(*) FROM sessions WHERE concluded").fetchall()),
        ("per_day, AT TIME ZONE per row (before)",
         lambda: con.execute(old_per_day).fetchall()),
        ("per_day (days.py)", lambda: figures.per_day(con, span)),
        ("length_distribution", lambda: figures.length_distribution(con, span)),
        ("headline", lambda: figures.headline(con, span)),
        ("late_events", lambda: figures.late_events(con, span)),
        ("board, 30 days, UTC", lambda: figures.board(con, pid, settings, until, DAYS)),
        ("board, 30 days, Europe/Paris",
         lambda: figures.board(con, pid, paris, until, DAYS)),
        ("board, 30 days, source ios",
         lambda: figures.board(con, pid, settings, until, DAYS, "ios")),
        ("whatif 30m, 7 days", lambda: preview(con, pid, settings, 1_800_000, until, 7)),
        ("whatif 30m, 30 days", lambda: preview(con, pid, settings, 1_800_000, until, DAYS)),
    ]  # fmt: skip
    print(f"\nload average before: {os.getloadavg()[0]:.1f}")
    print(f"\n| step | best s | median s ({a.runs} runs) | CPU s of the best |")
    print("| --- | ---: | ---: | ---: |")
    for name, work in cases:
        runs = a.runs if not name.startswith("whatif") else max(1, a.runs // 2)
        best, median, cpu = timed(runs, work)
        print(f"| {name} | {best:.3f} | {median:.3f} | {cpu:.3f} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
