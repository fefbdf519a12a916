"""Where `lull import` and `lull resessionize` spend their time, phase by phase.

    python bench/phases.py FILE [--skip-pieces] [--cprofile 25] [--threads N]

Calls `lull.importer.import_ndjson` and `lull.resessionize.resessionize` in this process
on a fresh store (bench/out/phases.duckdb), with a progress callback that timestamps the
import's phases and a connection wrapper that times every SQL statement (the time between
statements is Python and NumPy). Then times pieces on their own in an in-memory DuckDB:
`read_json` of the file with JSON-typed columns (as lull reads it, to check each field
itself) and with plain typed columns. With --cprofile N, also prints the
N functions with the most cumulative time during the import. With --irregular, also
counts (in plain SQL) the arrivals that are out of time order or after their session
fell due, which a live replay cannot treat set-wise.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import duckdb

from lull.importer import import_ndjson  # type: ignore[import-untyped, unused-ignore]
from lull.model import Settings  # type: ignore[import-untyped, unused-ignore]
from lull.resessionize import resessionize  # type: ignore[import-untyped, unused-ignore]
from lull.store.db import connect  # type: ignore[import-untyped, unused-ignore]
from lull.store.projects import now_ms, project_id, save_settings  # type: ignore[import-untyped, unused-ignore]

HERE = Path(__file__).resolve().parent


def _cpu() -> float:
    """CPU time of this process so far (all its threads: DuckDB's too), in s."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Timeline:
    """Named spans, in order: statements, phases and the gaps between statements, each
    with its wall time and the process's CPU time (on a shared machine the CPU time is
    the steadier figure)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float]] = []
        self.cpu: list[float] = []
        self.last = time.perf_counter()
        self.last_cpu = _cpu()

    def mark(self, label: str) -> None:
        now, cpu = time.perf_counter(), _cpu()
        self.spans.append((label, now - self.last))
        self.cpu.append(cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu


class TimedConnection:
    """Forwards everything to a DuckDB connection, timing `execute` statement by statement."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timeline: Timeline) -> None:
        self._con = con
        self._timeline = timeline

    def execute(self, query: str, parameters: object = None) -> duckdb.DuckDBPyConnection:
        self._timeline.mark("  (Python/NumPy between statements)")
        result = self._con.execute(query, parameters)
        self._timeline.mark("  SQL: " + _short(query))
        return result

    def sql(self, query: str) -> TimedRelation:
        return TimedRelation(self._con.sql(query), query, self._timeline)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


class TimedRelation:
    """A relation from `TimedConnection.sql`: its reads (`to_arrow_table`, `fetchall`)
    are timed as statements."""

    def __init__(self, rel: duckdb.DuckDBPyRelation, query: str, timeline: Timeline) -> None:
        self._rel, self._query, self._timeline = rel, query, timeline

    def _timed(self, name: str) -> Any:
        self._timeline.mark("  (Python/NumPy between statements)")
        out = getattr(self._rel, name)()
        self._timeline.mark("  SQL: " + _short(self._query))
        return out

    def to_arrow_table(self) -> Any:
        return self._timed("to_arrow_table")

    def fetchall(self) -> Any:
        return self._timed("fetchall")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rel, name)


def _short(query: str) -> str:
    text = re.sub(r"\s+", " ", query).strip()
    text = re.sub(r"'[^']{40,}'", "'...'", text)
    return text[:90] + ("..." if len(text) > 90 else "")


def _report(title: str, timeline: Timeline, top: int = 12) -> None:
    total, total_cpu = sum(s for _, s in timeline.spans), sum(timeline.cpu)
    merged: dict[str, tuple[float, float]] = {}
    for (label, s), c in zip(timeline.spans, timeline.cpu, strict=True):
        w0, c0 = merged.get(label, (0.0, 0.0))
        merged[label] = (w0 + s, c0 + c)
    print(f"\n{title}: {total:.2f} s wall, {total_cpu:.2f} s CPU")
    for label, (s, c) in sorted(merged.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {s:8.2f} s {c:8.2f} s CPU {100 * c / total_cpu:5.1f}%  {label}")


def _timed(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    started = time.perf_counter()
    con.execute(sql).fetchall()
    return time.perf_counter() - started


def pieces(path: str, threads: int | None) -> None:
    """Pieces of the import's first phase, each on its own."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {threads}")
    quoted = "'" + path.replace("'", "''") + "'"
    json_cols = (
        "{message_id: 'JSON', profile_id: 'JSON', name: 'JSON', ts: 'JSON', source: 'JSON', "
        "received_at: 'JSON', sent_at: 'JSON', properties: 'JSON'}"
    )
    typed_cols = (
        "{message_id: 'VARCHAR', profile_id: 'VARCHAR', name: 'VARCHAR', ts: 'BIGINT', "
        "source: 'VARCHAR', received_at: 'BIGINT', sent_at: 'BIGINT', properties: 'JSON'}"
    )
    read = "read_json({p}, format = 'newline_delimited', columns = {c})"
    print("\npieces, each alone (in-memory DuckDB):")
    for label, sql in (
        ("count(*) of read_json, JSON columns", f"SELECT count(*) FROM {read}"),
        ("count(*) of read_json, typed columns", f"SELECT count(*) FROM {read}"),
        (
            "CREATE TABLE AS read_json, JSON columns + ordinality",
            f"CREATE OR REPLACE TABLE a AS SELECT * FROM {read} WITH ORDINALITY",
        ),
        (
            "CREATE TABLE AS read_json, typed columns + ordinality",
            f"CREATE OR REPLACE TABLE a AS SELECT * FROM {read} WITH ORDINALITY",
        ),
    ):
        cols = json_cols if "JSON columns" in label else typed_cols
        print(f"  {_timed(con, sql.format(p=quoted, c=cols)):8.2f} s  {label}")
    con.close()


IRREGULAR = """
CREATE TABLE ev AS
SELECT ordinality AS rec, profile_id, received_at AS k,
       least(ts + coalesce(received_at - sent_at, 0), received_at) AS t
FROM read_json({path}, format = 'newline_delimited', columns = {{
    message_id: 'VARCHAR', profile_id: 'VARCHAR', name: 'VARCHAR', ts: 'BIGINT',
    source: 'VARCHAR', received_at: 'BIGINT', sent_at: 'BIGINT', properties: 'JSON'}})
    WITH ORDINALITY
WHERE source <> 'api' AND name NOT IN ({excluded});
CREATE TABLE arrivals AS
SELECT profile_id, t, k, lag(t) OVER w AS pt, lag(k) OVER w AS pk
FROM ev WINDOW w AS (PARTITION BY profile_id ORDER BY k, t, rec);
SELECT count(*) AS events,
       count(*) FILTER (WHERE t < pt) AS back_in_time,
       count(*) FILTER (WHERE t - pt < {timeout} AND k <> pk AND k > pt + {timeout})
           AS after_due,
       count(DISTINCT profile_id) AS profiles,
       count(DISTINCT profile_id) FILTER (WHERE t < pt OR (
           t - pt < {timeout} AND k <> pk AND k > pt + {timeout})) AS irregular_profiles
FROM arrivals
"""


def irregular(path: str, timeout_ms: int = 20 * 60 * 1000) -> None:
    """How many eligible events arrive out of time order, or after the session they join
    fell due (the arrivals a live replay cannot treat set-wise), and how many profiles
    have at least one. Independent of lull's code: plain SQL over the file."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    quoted = "'" + path.replace("'", "''") + "'"
    excluded = ", ".join(f"'{n}'" for n in Settings().excluded)
    *setup, query = IRREGULAR.format(path=quoted, excluded=excluded, timeout=timeout_ms).split(
        ";\n"
    )
    started = time.perf_counter()
    for statement in setup:
        con.execute(statement)
    row = con.execute(query).fetchone()
    assert row is not None
    events, back, after_due, profiles, bad_profiles = (int(v) for v in row)
    print(f"\nirregular arrivals ({time.perf_counter() - started:.1f} s, plain SQL):")
    print(f"  {events:,} eligible events of {profiles:,} profiles")
    print(f"  {back:,} arrive with an event time before the previous arrival's")
    print(f"  {after_due:,} join the previous event's session but arrive after it fell due")
    print(f"  {bad_profiles:,} profiles ({100 * bad_profiles / profiles:.1f}%) have at least one")
    con.close()


def _open(db: Path, threads: int | None, memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    con: duckdb.DuckDBPyConnection = connect(db)
    if threads:
        con.execute(f"SET threads = {threads}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="phase timings of lull import and resessionize")
    p.add_argument("file", type=Path)
    p.add_argument("--db", type=Path, default=HERE / "out" / "phases.duckdb")
    p.add_argument("--threads", type=int, help="DuckDB threads (default: one per core)")
    p.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 1GB (default: DuckDB's)")
    p.add_argument("--cprofile", type=int, default=0, metavar="N", help="top N functions")
    p.add_argument("--skip-pieces", action="store_true")
    p.add_argument("--irregular", action="store_true", help="also count irregular arrivals")
    p.add_argument("--skip-resessionize", action="store_true")
    a = p.parse_args(argv)
    for f in (a.db, a.db.with_name(a.db.name + ".wal")):
        f.unlink(missing_ok=True)

    raw = _open(a.db, a.threads, a.memory_limit)
    pid = project_id(raw, "default")
    save_settings(raw, pid, Settings(sessions_enabled=True))
    timeline = Timeline()
    con = cast(duckdb.DuckDBPyConnection, TimedConnection(raw, timeline))
    phases = Timeline()
    progress: Callable[[str], None] = phases.mark
    profiler = cProfile.Profile() if a.cprofile else None

    started = time.perf_counter()
    timeline.last = phases.last = started
    timeline.last_cpu = phases.last_cpu = _cpu()
    if profiler:
        profiler.enable()
    report = import_ndjson(con, pid, str(a.file), now=now_ms(), progress=progress)
    if profiler:
        profiler.disable()
    phases.mark("end")
    total = time.perf_counter() - started
    print(f"import of {report.records:,} events: {total:.2f} s, {report.as_json()}")
    # each mark closes the span before it: shift labels so each phase names its own span
    names = ["(settings)"] + [label for label, _ in phases.spans[:-1]]
    print("phases (progress callback): wall, CPU (all threads)")
    for name, (_, s), c in zip(names, phases.spans, phases.cpu, strict=True):
        print(f"  {s:8.2f} s {c:8.2f} s CPU {100 * s / total:5.1f}%  {name}")
    _report("import, by statement", timeline)
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(a.cprofile)
        print(out.getvalue())

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process after the import: {rss:.0f} MiB")
    if not a.skip_resessionize:
        # as the command does: a new process opens the store the import closed
        started = time.perf_counter()
        raw.close()
        took = time.perf_counter() - started
        print(f"\nclosing the store after the import (checkpoint): {took:.2f} s")
        raw = _open(a.db, a.threads, a.memory_limit)
        timeline = Timeline()
        con = cast(duckdb.DuckDBPyConnection, TimedConnection(raw, timeline))
        rebuilt = resessionize(con, pid, now=now_ms())
        print(f"\nresessionize: {rebuilt.as_json()}")
        _report("resessionize, by statement", timeline)
    started = time.perf_counter()
    raw.close()
    print(f"\nclosing the store (checkpoint): {time.perf_counter() - started:.2f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss:.0f} MiB")
    if not a.skip_pieces:
        pieces(str(a.file), a.threads)
    if a.irregular:
        irregular(str(a.file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
