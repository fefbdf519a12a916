"""Benchmark: lull's Spark batch job against Spark's built-in `session_window`, in one run,
with lull's embedded import and resessionize on the same events.

    python bench/spark.py [--events 10000000] [--masters local[1],local[2]]
                          [--driver-memory 6g] [--json FILE]

The events come from bench/generate.py (cached under bench/out/, as bench/sessionize.py
does). Each step runs in its own process (its wall time, CPU time and peak RSS its own):
(a) `lull import` into a fresh store (sessions on); (b) `lull resessionize`; then the
store's `lull export events --format parquet`, which both Spark jobs read: (c) `lull
spark resessionize` (events, sessions, Session Concluded written) and (d) the baseline,
`session_window(ts, '20 minutes')` grouped by profile over the same eligible events (R1),
writing its sessions; (c) and (d) once per master. A Spark process's time includes
starting the JVM; "inner s" is the job's own time after start-up. Checks: the Spark
job's sessions are the store's (ids, times, counts), and session_window finds as many.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

import sessionize
from sessionize import LULL, Measured, data_file, measure

HERE = Path(__file__).resolve().parent
GAP = "20 minutes"


def window_job(events: str, out: str, master: str) -> dict[str, Any]:
    """The baseline, run in a child process: Spark's session windows over R1's events."""
    from pyspark.sql import functions as F

    from lull.model import DEFAULT_EXCLUDED, SESSION_CONCLUDED
    from lull.spark.session import spark_session

    spark = spark_session(master, app="bench-session-window")
    started = time.perf_counter()
    frame = spark.read.parquet(events)
    eligible = frame.where(
        (F.col("source") != "api") & ~F.col("name").isin([*DEFAULT_EXCLUDED, SESSION_CONCLUDED])
    ).withColumn("t", F.to_timestamp("ts"))
    sessions = eligible.groupBy("profile_id", F.session_window("t", GAP)).agg(
        F.count("*").alias("events"), F.min("t").alias("first_ts"), F.max("t").alias("last_ts")
    )
    sessions.write.parquet(out)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "sessions": spark.read.parquet(out).count()}


def spark_env(driver_memory: str) -> dict[str, str]:
    """The environment of a Spark process: the driver's memory is set before its JVM starts."""
    env = {k: v for k, v in os.environ.items() if k not in ("LULL_DB", "LULL_PROJECT")}
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["PYSPARK_SUBMIT_ARGS"] = f"--driver-memory {driver_memory} pyspark-shell"
    return env


def same_sessions(store_sessions: Path, spark_out: Path) -> dict[str, int]:
    """Sessions (every column) found only by the store or only by the Spark job."""
    store, spark = f"'{store_sessions}'", f"'{spark_out}/sessions/*.parquet'"
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    counts = [
        con.execute(f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})").fetchone()
        for a, b in ((spark, store), (store, spark))
    ]
    con.close()
    return {"only_spark": int((counts[0] or [0])[0]), "only_store": int((counts[1] or [0])[0])}


WIDTHS = (36, 8, 8, 8, 10, 8, 16)


def _row(cells: list[str]) -> str:
    pairs = enumerate(zip(cells, WIDTHS, strict=True))
    padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
    return "| " + " | ".join(padded) + " |"


def _eps(n: int, seconds: float) -> str:
    return f"{n / seconds / 1e3:,.0f} k" if seconds > 0 else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="lull's Spark job vs Spark's session_window")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--masters", default="local[1],local[2]")
    p.add_argument("--driver-memory", default="6g")
    p.add_argument("--out", type=Path, default=HERE / "out", help="cache and work folder")
    p.add_argument("--json", type=Path, help="also write the figures here as JSON")
    p.add_argument(
        "--spark-only", action="store_true", help="reuse the last run's store export if any"
    )
    p.add_argument("--window-child", nargs=3, metavar=("EVENTS", "OUT", "MASTER"), help="internal")
    a = p.parse_args(argv)
    if a.window_child:
        print(json.dumps(window_job(*a.window_child)))
        return 0

    n, profiles = a.events, max(1, a.events // 50)
    work = a.out / f"spark-{n}"
    events, store_sessions = work / "events.parquet", work / "sessions.parquet"
    reuse = a.spark_only and events.exists() and store_sessions.exists()
    if work.exists():
        import shutil

        for old in work.iterdir():
            if not (reuse and old in (events, store_sessions)):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
    work.mkdir(parents=True, exist_ok=True)
    path = data_file(a.out, n, profiles, a.days, a.seed)
    db, env = work / "store.duckdb", spark_env(a.driver_memory)
    lull = [LULL, "--db", str(db)]
    load_before = os.getloadavg()
    runs: list[tuple[str, Measured, float]] = []

    def step(label: str, cmd: list[str], inner: str = "seconds") -> Measured:
        print(f"{label} ...", flush=True)
        done = measure(cmd, env)
        runs.append((label, done, float(done.json()[inner])))
        return done

    started = time.perf_counter()
    if not reuse:
        measure([*lull, "settings", "--sessions", "on"], env)
        step("lull import", [*lull, "import", str(path)])
        step("lull resessionize", [*lull, "resessionize"])
        started = time.perf_counter()
        sessionize._export(lull, env, "events", events)
        sessionize._export(lull, env, "sessions", store_sessions)
    export_s = time.perf_counter() - started
    checks: dict[str, Any] = {}
    for master in a.masters.split(","):
        name = master.replace("[", "").replace("]", "").replace("*", "all")  # no glob signs
        out = work / f"lull-{name}"
        step(
            f"lull spark resessionize, {master}",
            [LULL, "spark", "resessionize", "--events", str(events), "--out", str(out),
             "--master", master],
        )  # fmt: skip
        window = step(
            f"session_window, {master}",
            [sys.executable, __file__, "--window-child", str(events), str(work / f"w-{name}"),
             master],
        )  # fmt: skip
        checks[master] = {
            "same sessions as the store": same_sessions(store_sessions, out),
            "session_window sessions": window.json()["sessions"],
        }
    store_count = duckdb.execute(f"SELECT count(*) FROM '{store_sessions}'").fetchone()

    head = ["step", "wall s", "inner s", "cpu s", "events/s", "peak MB", "inner vs window"]
    lines = [_row(head), _row(["-" * w for w in WIDTHS])]
    inner = {label: s for label, _, s in runs}
    for label, m, s in runs:
        window_label = label.replace("lull spark resessionize", "session_window")
        ratio = f"{s / inner[window_label]:.2f}x" if label.startswith("lull spark") else ""
        cpu, rss = f"{m.user_s + m.sys_s:.1f}", f"{m.max_rss_mb:.0f}"
        lines.append(_row([label, f"{m.wall_s:.1f}", f"{s:.1f}", cpu, _eps(n, s), rss, ratio]))
    print()
    print(
        f"{n:,} events, {profiles:,} profiles, {a.days} days; {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, driver memory {a.driver_memory}"
    )
    print("\n".join(lines))
    load = " / ".join(f"{x:.2f}" for x in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before / after: {load}")
    print(f"export of the store to Parquet (the Spark input): {export_s:.1f} s")
    print("events/s: input events / inner s (the job's own time; Spark: after start-up).")
    print("cpu s and peak MB are the launched process's (a Spark driver's JVM included).")
    ok = True
    for master, c in checks.items():
        same = c["same sessions as the store"]
        good = not any(same.values()) and c["session_window sessions"] == (store_count or [0])[0]
        ok = ok and good
        print(f"check [{master}]: {json.dumps(c)} (store: {store_count}): {'ok' if good else 'NO'}")
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "events": n,
                    "runs": [
                        {"step": label, "wall_s": m.wall_s, "inner_s": s, "rss_mb": m.max_rss_mb}
                        for label, m, s in runs
                    ],
                    "checks": checks,
                },
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
