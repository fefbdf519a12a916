"""Benchmark: `lull spark resessionize` against Spark's own `session_window`, side by side
in one run, on the same Parquet events (issue 15, item 2: at most 1.2x its time).

    python bench/spark_batch.py [--events 1000000] [--master local[2]] [--rounds 2]
                                [--driver-memory 6g] [--reuse]

The events come from bench/generate.py (cached under bench/out/); they are imported into
a store (`lull import`, sessions on), rebuilt (`lull resessionize`) and exported as
Parquet (`lull export events|sessions --format parquet`): that file is the input of both
Spark jobs, and the store's sessions are the answer. Then, `--rounds` times, alternating:
(a) `lull spark resessionize` and (b) the baseline, `bench/spark.py`'s `window_job`
(`groupBy(profile_id, session_window(ts, '20 minutes'))` over R1's events, writing its
sessions), each in its own process. "inner s" is a job's own time after Spark started.
Checks: the job's sessions are the store's, every column, and session_window finds as
many. `--reuse` takes the last run's export (bench/out/spark-batch-N/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb

import sessionize
from sessionize import LULL, data_file, measure
from spark import same_sessions, spark_env

HERE = Path(__file__).resolve().parent
SPARK_BENCH = str(HERE / "spark.py")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="lull spark resessionize vs session_window")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--driver-memory", default="6g")
    p.add_argument("--reuse", action="store_true", help="the last run's export, if any")
    p.add_argument("--out", type=Path, default=HERE / "out")
    a = p.parse_args(argv)

    n, profiles = a.events, max(1, a.events // 50)
    work = a.out / f"spark-batch-{n}"
    events, store_sessions = work / "events.parquet", work / "sessions.parquet"
    env = spark_env(a.driver_memory)
    if not (a.reuse and events.exists() and store_sessions.exists()):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        lull = [LULL, "--db", str(work / "store.duckdb")]
        path = data_file(a.out, n, profiles, 30, 1)
        for step in (["settings", "--sessions", "on"], ["import", str(path)], ["resessionize"]):
            measure([*lull, *step], env)
        sessionize._export(lull, env, "events", events)
        sessionize._export(lull, env, "sessions", store_sessions)
        (work / "store.duckdb").unlink()
    load_before = os.getloadavg()
    pairs: list[tuple[float, float, float, float]] = []
    checks = []
    for r in range(a.rounds):
        out, window_out = work / "lull", work / "window"
        for old in (out, window_out):
            shutil.rmtree(old, ignore_errors=True)
        job = measure(
            [LULL, "spark", "resessionize", "--events", str(events), "--out", str(out),
             "--master", a.master],
            env,
        )  # fmt: skip
        window = measure(
            [sys.executable, SPARK_BENCH, "--window-child", str(events), str(window_out),
             a.master],
            env,
        )  # fmt: skip
        inner_job, inner_window = float(job.json()["seconds"]), float(window.json()["seconds"])
        pairs.append((inner_job, inner_window, job.wall_s, window.wall_s))
        same = same_sessions(store_sessions, out)
        checks.append((same, int(window.json()["sessions"])))
        print(
            f"round {r + 1}: lull spark resessionize {inner_job:.1f} s inner ({job.wall_s:.1f} s "
            f"wall), session_window {inner_window:.1f} s inner ({window.wall_s:.1f} s wall): "
            f"{inner_job / inner_window:.2f}x inner, {job.wall_s / window.wall_s:.2f}x wall",
            flush=True,
        )
    stored = duckdb.execute(f"SELECT count(*) FROM '{store_sessions}'").fetchone()
    expected = int((stored or [0])[0])
    load = " / ".join(f"{x:.2f}" for x in (*load_before, *os.getloadavg()))
    print(f"\n{n:,} events, {profiles:,} profiles, master {a.master}, {time.strftime('%H:%M')}")
    print("| round | lull inner s | window inner s | ratio inner | lull wall s | window wall s "
          "| ratio wall |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for i, (ji, wi, jw, ww) in enumerate(pairs, 1):
        print(f"| {i} | {ji:.1f} | {wi:.1f} | **{ji / wi:.2f}x** | {jw:.1f} | {ww:.1f} "
              f"| {jw / ww:.2f}x |")  # fmt: skip
    print(f"load average (1, 5, 15 min) before / after: {load}")
    ok = True
    for i, (same, found) in enumerate(checks, 1):
        good = not any(same.values()) and found == expected
        ok = ok and good
        print(f"check round {i}: {same} (store: {expected} sessions; session_window found "
              f"{found}): {'ok' if good else 'NO'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
