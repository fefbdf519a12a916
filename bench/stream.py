"""Benchmark: `lull spark stream` against lull's embedded import on the same events.

    python bench/stream.py [--events 1000000] [--files 20] [--master local[2]]

The events come from bench/generate.py (cached under bench/out/). They are split, in
file order, into `--files` landing files; then, each in its own process: (a) `lull import
--keep-open` into a fresh store (the embedded engine, the clock left at the last
arrival) and (b) `lull spark stream --until-idle` over the landing directory (its time
includes starting the JVM). Checks that both give every event the same session id and
late mark, and the same concluded sessions. Prints times and events/s side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

import generate

HERE = Path(__file__).resolve().parent
LULL = str(Path(sys.executable).with_name("lull"))


def timed(*args: str) -> float:
    """Seconds `lull ARGS` takes (its process, start-up included); its phases, the
    `lull: ...` lines it prints on stderr, are printed here."""
    started = time.perf_counter()
    done = subprocess.run([LULL, *args], check=True, capture_output=True, text=True)
    took = time.perf_counter() - started
    for line in done.stderr.splitlines():
        if line.startswith("lull: "):
            print(f"  {line}", file=sys.stderr)
    return took


def split(source: Path, landing: Path, files: int) -> None:
    lines = source.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // files)
    landing.mkdir()
    for k in range(files):
        (landing / f"{k:05d}.ndjson").write_bytes(b"".join(lines[k * size : (k + 1) * size]))


def compare(db: Path, out: Path, tmp: Path) -> dict[str, int]:
    """Events whose (session id, late) differ, and concluded sessions of one side only."""
    for what in ("events", "sessions"):
        target = tmp / f"{what}.parquet"
        run = [LULL, "--db", str(db), "export", what, "--format", "parquet", "-o", str(target)]
        subprocess.run(run, check=True, capture_output=True)
    con = duckdb.connect()
    counts = con.execute(
        f"""
        WITH store AS (SELECT * FROM '{tmp}/events.parquet' WHERE name <> 'Session Concluded'),
             spark AS (SELECT * FROM read_parquet('{out}/events/*/*.parquet'))
        SELECT count(*) FILTER (WHERE spark.message_id IS NULL OR store.message_id IS NULL
                   OR spark.session_id IS DISTINCT FROM store.session_id
                   OR spark.late <> store.late),
               count(*) FILTER (WHERE store.late)
        FROM store FULL JOIN spark USING (message_id)"""
    ).fetchone()
    sessions = con.execute(
        f"""
        SELECT count(*) FROM (
            (SELECT session_id, first_ts, last_ts, events FROM '{tmp}/sessions.parquet'
             WHERE concluded
             EXCEPT SELECT session_id, first_ts, last_ts, events
             FROM read_parquet('{out}/sessions/*/*.parquet'))
            UNION ALL
            (SELECT session_id, first_ts, last_ts, events
             FROM read_parquet('{out}/sessions/*/*.parquet')
             EXCEPT SELECT session_id, first_ts, last_ts, events FROM '{tmp}/sessions.parquet'
             WHERE concluded))"""
    ).fetchone()
    concluded = con.execute(f"SELECT count(*) FROM '{tmp}/sessions.parquet' WHERE concluded")
    total = concluded.fetchone()
    con.close()
    assert counts is not None and sessions is not None and total is not None
    return {
        "events_differing": int(counts[0]),
        "late_events": int(counts[1]),
        "concluded_sessions": int(total[0]),
        "sessions_differing": int(sessions[0]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args(argv)
    profiles = max(1, args.events // 50)
    source = HERE / "out" / f"events-{args.events}-p{profiles}-d30-s1.ndjson"
    if not source.exists():
        generate.generate(source, events=args.events, profiles=profiles, days=30, seed=1)
    with tempfile.TemporaryDirectory(prefix="lull-bench-stream-") as name:
        tmp = Path(name)
        split(source, tmp / "landing", args.files)
        db = tmp / "lull.duckdb"
        subprocess.run([LULL, "--db", str(db), "settings", "--sessions", "on"], check=True)
        embedded = timed("--db", str(db), "import", str(source), "--keep-open")
        out = tmp / "out"
        spark = timed(
            *("spark", "stream", "--landing", str(tmp / "landing"), "--out", str(out)),
            *("--checkpoint", str(tmp / "ck"), "--until-idle", "--master", args.master),
        )
        checks = compare(db, out, tmp)
    n = args.events
    print(f"{'engine':<36} {'seconds':>8} {'events/s':>10}")
    print(f"{'lull import --keep-open':<36} {embedded:8.1f} {n / embedded:10,.0f}")
    print(f"{'lull spark stream ' + args.master:<36} {spark:8.1f} {n / spark:10,.0f}")
    print(f"ratio stream / import: {spark / embedded:.1f}x")
    print(json.dumps(checks))
    return 0 if checks["events_differing"] == checks["sessions_differing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
