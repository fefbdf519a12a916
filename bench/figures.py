"""Benchmark: the board's further figures (figures.py) over the 10-million-event store,
side by side with the board itself.

    python bench/figures.py [--events 10000000] [--profiles 200000] [--runs 5] [--store P]

Uses (or makes, as bench/board.py does) bench/out/board-<events>.duckdb, then times, in
this process on a read-only connection, the whole board for the data's 30 days (the
anchor) and each further figure for the same 30 days, each with the 30 days before
it; then the figures for 7 days and for one source. Also times, on a copy of the store,
what keeping each session's first and last event costs (store/ends.py's fill: of the
whole store, as an import or a rebuild runs it, and of 2,000 sessions concluded since, as
the server runs it every 30 s) and the entry/exit figure when none of
them are stored (the read falls back to the events). Prints the best and the median of
--runs; compare within one run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import duckdb

from board import DAYS, FIRST, HERE, bench_store, timed
from lull import board as the_board
from lull.figures import FIGURES, figure
from lull.model import Settings
from lull.store.db import connect
from lull.store.ends import fill
from lull.store.projects import get_settings


def main(argv: list[str] | None = None) -> int:
    a, store = bench_store(argv, __doc__)
    with tempfile.TemporaryDirectory(dir=HERE / "out") as tmp:
        copy = Path(tmp) / "figures.duckdb"
        shutil.copy(store, copy)
        con = connect(str(copy))  # made writable once: the ends kept (as an import would)
        pid = 1
        print("\n| step (a copy of the store) | best s | median s | CPU s of the best |")
        print("| --- | ---: | ---: | ---: |")
        settings = get_settings(con, pid)
        until = FIRST + timedelta(days=DAYS - 1)
        best, median, cpu = timed(1, lambda: figure(con, "entry_exit", pid, settings, until, DAYS))
        print(f"| entry_exit, no ends stored (read from the events) | {best:.3f} | {median:.3f} "
              f"| {cpu:.3f} |")  # fmt: skip
        best, median, cpu = timed(1, lambda: fill(con, pid))
        print(f"| fill: every session's ends stored | {best:.3f} | {median:.3f} | {cpu:.3f} |")
        best, median, cpu = timed(3, lambda: fill(con, pid))
        print(f"| fill again: nothing to do | {best:.3f} | {median:.3f} | {cpu:.3f} |")
        # as the server's fill every 30 s finds them: the latest 2,000 sessions concluded
        # since (their rows dropped here), of profiles with a month of sessions each
        latest = """DELETE FROM session_ends WHERE skey IN
                    (SELECT skey FROM session_ends ORDER BY last_ts DESC LIMIT 2000)"""
        con.execute(latest)
        best, median, cpu = timed(3, lambda: figure(con, "entry_exit", pid, settings, until, DAYS))
        print(f"| entry_exit, 2,000 sessions' ends not stored yet (found from the events) "
              f"| {best:.3f} | {median:.3f} | {cpu:.3f} |")  # fmt: skip
        best, median, cpu = timed(1, lambda: fill(con, pid))
        print(f"| fill: 2,000 newly concluded sessions | {best:.3f} | {median:.3f} | {cpu:.3f} |")
        con.close()
        run(copy, a.runs)
    return 0


def run(store: Path, runs: int) -> None:
    con = duckdb.connect(str(store), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    pid = 1
    settings = get_settings(con, pid)
    until = FIRST + timedelta(days=DAYS - 1)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("board, 30 days (the anchor)",
         lambda: the_board.board(con, pid, settings, until, DAYS)),
    ]  # fmt: skip
    for name in FIGURES:
        for days, source in ((DAYS, None), (7, None), (DAYS, "ios")):
            label = f"{name}, {days} days + the {days} before" + (f", {source}" if source else "")
            cases.append((label, _work(con, name, pid, settings, until, days, source)))
    print(f"\nload average before: {os.getloadavg()[0]:.1f}")
    print(f"\n| step | best s | median s ({runs} runs) | CPU s of the best |")
    print("| --- | ---: | ---: | ---: |")
    for name, work in cases:
        best, median, cpu = timed(runs, work)
        print(f"| {name} | {best:.3f} | {median:.3f} | {cpu:.3f} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    con.close()


def _work(
    con: duckdb.DuckDBPyConnection, name: str, pid: int, settings: Settings, until: date,
    days: int, source: str | None,
) -> Callable[[], object]:  # fmt: skip
    return lambda: figure(con, name, pid, settings, until, days, source, "screen")


if __name__ == "__main__":
    sys.exit(main())
