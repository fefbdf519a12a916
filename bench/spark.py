"""Benchmark: lull's Spark batch job against Spark's built-in `session_window`, in one run,
with lull's embedded import and resessionize on the same events; or (`--scaling`) both of
lull's Spark jobs on local[1], local[2] and a standalone cluster of two one-core workers.

    python bench/spark.py [--events 10000000] [--masters local[1],local[2]]
                          [--driver-memory 6g] [--json FILE]
    python bench/spark.py --scaling [--events 1000000] [--servers 2] [--max-files N]
                          [--worker-memory 2g] [--rounds 1] [--plot docs/spark-scaling.png]
                          [--json FILE]

`--scaling`: the events (bench/generate.py) are imported into a store and exported as
Parquet, the batch job's input; `--servers` `lull serve --ingest-only` processes writing
one log directory take as many events from bench/loadgen.py (100 a request), the stream's
input (`--log`). Then, in one run, on each of local[1], local[2] and the cluster
(tests/sparkcluster.py: a master and two one-core workers, JVMs of their own on
127.0.0.1, the jobs sent by spark-submit): `lull spark resessionize` and `lull spark
stream --log --until-idle --max-files N`. Prints events/s after Spark's start (the batch
job's own time; the stream's micro-batches, and apart those after the first), checks that
every master gives the same sessions and that the stream took each acknowledged event
once, and draws the figure (matplotlib) from the numbers.

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
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
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
    p.add_argument("--scaling", action="store_true", help="events/s: local[1], local[2], cluster")
    p.add_argument("--servers", type=int, default=2, help="--scaling: ingest-only servers")
    p.add_argument("--max-files", type=int, help="--scaling: segments a batch (a 4th of all)")
    p.add_argument("--worker-memory", default="2g", help="--scaling: each worker's executor")
    p.add_argument("--plot", type=Path, help="--scaling: write the figure as a PNG here")
    p.add_argument("--rounds", type=int, default=1, help="--scaling: runs of each, interleaved")
    a = p.parse_args(argv)
    if a.scaling:
        return scaling(a)
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


# -- Scaling: events/s on local[1], local[2] and a two-worker standalone cluster --------------

CLUSTER = "cluster 2x1"
STREAM_DAEMON = {"spark.python.daemon.module": "lull.spark.stream_daemon"}
BATCH_LINE = re.compile(r"^lull: batch (\d+): (\d+) files, (\d+) rows")
PHASE = re.compile(r"(parse|duplicates|step|commit) ([0-9.]+)s")


def feed(work: Path, events: int, servers: int) -> dict[str, Any]:
    """The ingestion-only tier: `servers` `lull serve --ingest-only` processes writing one
    log directory, each sent events/servers events by bench/loadgen.py (100 a request,
    closed loop) at once; stopped when every request is answered (their segments closed)."""
    from sparkcluster import free_port

    db, log = work / "ingest.duckdb", work / "log"
    keys = json.loads(
        subprocess.run([LULL, "--db", str(db), "project", "create", "bench", "--json"],
                       check=True, capture_output=True, text=True).stdout
    )  # fmt: skip
    procs, ports = [], []
    try:
        for k in range(servers):
            port = free_port()
            out = (work / f"ingest-{k}.log").open("wb")
            procs.append(subprocess.Popen(
                [LULL, "--db", str(db), "serve", "--ingest-only", "--port", str(port),
                 "--log-dir", str(log), "--writer", f"ingest_{k}"],
                stdout=out, stderr=subprocess.STDOUT,
            ))  # fmt: skip
            ports.append(port)
        for port in ports:
            _ready(port)
        started = time.perf_counter()
        loads = [
            subprocess.Popen(
                [sys.executable, str(HERE / "loadgen.py"), "--port", str(port), "--key",
                 keys["keys"]["web"], "--requests", str(events // servers // 100),
                 "--connections", "16", "--run", f"s{k}"],
                stdout=subprocess.PIPE, text=True,
            )
            for k, port in enumerate(ports)
        ]  # fmt: skip
        results = [json.loads(p.communicate()[0].splitlines()[-1]) for p in loads]
        took = time.perf_counter() - started
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    sent = sum(r["events"] for r in results)
    assert sent == events // servers // 100 * 100 * servers, results
    segments = sorted(log.rglob("*.seg"))
    return {"events": sent, "seconds": took, "segments": len(segments), "log": str(log)}


def _ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"ingest-only server on {port} not ready")


def stream_figures(text: str) -> dict[str, float]:
    """From a stream's `lull: ...` lines: Spark's start, every batch's rows and phases,
    and the batches after the first (the first also waits for a cluster's executors)."""
    start = float(re.search(r"lull: Spark started in ([0-9.]+)s", text).group(1))  # type: ignore[union-attr]
    batches = []
    for line in text.splitlines():
        m = BATCH_LINE.match(line)
        if m:
            seconds = sum(float(s) for _, s in PHASE.findall(line))
            batches.append((int(m.group(1)), int(m.group(3)), seconds))
    later = [b for b in batches if b[0] > 0]
    return {
        "start_s": start,
        "rows": sum(b[1] for b in batches),
        "inner_s": sum(b[2] for b in batches),
        "steady_rows": sum(b[1] for b in later),
        "steady_s": sum(b[2] for b in later),
        "batches": len(batches),
    }


def _submitted_json(text: str) -> Any:
    """The JSON that `lull spark resessionize` prints last (spark-submit mixes the driver's
    stderr lines into its stdout)."""
    return json.JSONDecoder().raw_decode(text[text.rindex("\n{") + 1 :])[0]


def scaling(a: argparse.Namespace) -> int:
    """`--scaling`: both jobs on local[1], local[2] and the cluster (see the docstring)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from sparkcluster import SparkCluster

    n = a.events
    work = a.out / f"spark-scaling-{n}"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    path = data_file(a.out, n, max(1, n // 50), a.days, a.seed)
    db, env = work / "store.duckdb", spark_env(a.driver_memory)
    lull = [LULL, "--db", str(db)]
    measure([*lull, "settings", "--sessions", "off"], env)
    print("lull import (sessions off) and its Parquet export: the batch job's input ...")
    measure([*lull, "import", str(path)], env)
    events = work / "events.parquet"
    sessionize._export(lull, env, "events", events)
    print(f"the ingestion-only tier ({a.servers} servers) takes {n:,} events ...", flush=True)
    fed = feed(work, n, a.servers)
    print(f"  {fed['events']:,} events in {fed['seconds']:.1f} s "
          f"({fed['events'] / fed['seconds']:,.0f} ev/s), {fed['segments']} segments")  # fmt: skip
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    # (the cluster's folder, with its driver file, out of bench/: mypy reads bench/)
    with (
        tempfile.TemporaryDirectory(prefix="lull-cluster-") as root,
        SparkCluster(Path(root), workers=2, worker_memory=a.worker_memory) as cluster,
    ):
        for k in range(a.rounds):  # rounds interleave the masters: the machine is shared
            for master in ("local[1]", "local[2]", CLUSTER):
                rows += scaling_run(a, master, k, work, events, fed, cluster)
        assert cluster.alive_workers(cluster.state()) == 2
    checks = scaling_checks([r for r in rows if r["round"] == 0], fed["events"])
    print()
    print(f"{n:,} events ({fed['events']:,} through the ingest tier for the stream); "
          f"{os.cpu_count()} cores; local driver memory {a.driver_memory}, cluster: a "
          f"master and 2 workers of 1 core, executors {a.worker_memory}")  # fmt: skip
    print("| job | master | round | wall s | job s | events/s | after batch 0 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        steady = (f"{r['steady_rows'] / r['steady_s'] / 1e3:,.0f} k ({r['batches']} batches)"
                  if r.get("steady_s") else "")  # fmt: skip
        print(f"| {r['job']} | {r['master']} | {r['round'] + 1} | {r['wall_s']:.1f} | "
              f"{r['inner_s']:.1f} | {_eps(r['events'], r['inner_s'])} | {steady} |")  # fmt: skip
    load = " / ".join(f"{x:.2f}" for x in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before / after: {load}")
    print(
        "job s: the job's own time after Spark started (the cluster's includes its "
        "executors' start); events/s = events / job s."
    )
    for what, good in checks.items():
        print(f"check: {what}: {'ok' if good else 'NO'}")
    if a.plot:
        plot(rows, n, a.plot)
        print(f"plot: {a.plot}")
    if a.json:
        when = datetime.now(UTC).isoformat(timespec="seconds")
        report = {"when": when, "events": n, "feed": fed, "runs": rows}
        a.json.write_text(json.dumps(report, indent=2))
    return 0 if all(checks.values()) else 1


def scaling_run(
    a: argparse.Namespace,
    master: str,
    r: int,
    work: Path,
    events: Path,
    fed: dict[str, Any],
    cluster: Any,
) -> list[dict[str, Any]]:
    """Both jobs on one master, each in a process of its own: a row for each."""
    name = master.replace("[", "").replace("]", "").replace(" ", "-") + f"-r{r}"
    db, env = work / "store.duckdb", spark_env(a.driver_memory)
    lull = [LULL, "--db", str(db)]
    rows = []
    out = work / f"batch-{name}"
    args = ["spark", "resessionize", "--events", str(events), "--out", str(out)]
    print(f"lull spark resessionize, {master} ...", flush=True)
    if master == CLUSTER:
        conf = {"spark.executor.memory": a.worker_memory}
        done = measure(cluster.submit_command(*args, db=db, conf=conf, quick=False), cluster.env())
        inner = float(_submitted_json(done.out)["seconds"])
    else:
        done = measure([*lull, *args, "--master", master], env)
        inner = float(done.json()["seconds"])
    common = {"master": master, "round": r}
    rows.append(common | {"job": "resessionize", "wall_s": done.wall_s, "inner_s": inner,
                          "events": a.events,
                          "out": str(out)})  # fmt: skip
    out = work / f"stream-{name}"
    args = ["spark", "stream", "--log", fed["log"], "--project", "bench", "--out", str(out),
            "--checkpoint", str(work / f"ck-{name}"), "--until-idle",
            "--max-files", str(a.max_files or max(1, fed["segments"] // 4))]  # fmt: skip
    print(f"lull spark stream --log, {master} ...", flush=True)
    if master == CLUSTER:
        done = measure(cluster.submit_command(*args, db=db, conf=STREAM_DAEMON), cluster.env())
    else:
        merged = ["sh", "-c", 'exec "$@" 2>&1', "sh"]  # its `lull:` lines on stdout
        done = measure([*merged, *lull, *args, "--master", master], env)
    figures = stream_figures(done.out)
    rows.append(common | {"job": "stream", "wall_s": done.wall_s, "inner_s": figures["inner_s"],
                          "events": figures["rows"],
                          "out": str(out)} | figures)  # fmt: skip
    return rows


def scaling_checks(rows: list[dict[str, Any]], fed: int) -> dict[str, bool]:
    """Each job gives the same answer on every master: the batch job's sessions (every
    column), the stream's events' sessions and late marks; and the stream took each event
    the tier acknowledged once."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    checks: dict[str, bool] = {}
    for job, query in (
        ("resessionize", "FROM read_parquet('{}/sessions/*.parquet')"),
        (
            "stream",
            "SELECT message_id, session_id, late FROM read_parquet('{}/events/*/*.parquet')",
        ),
    ):
        runs = [r for r in rows if r["job"] == job]
        first = query.format(runs[0]["out"])
        for r in runs[1:]:
            other = query.format(r["out"])
            differ = sum(
                int((con.execute(f"SELECT count(*) FROM ({x} EXCEPT ALL {y})").fetchone()
                     or [1])[0])
                for x, y in ((first, other), (other, first))
            )  # fmt: skip
            checks[f"{job}: the same on {r['master']} as on {runs[0]['master']}"] = differ == 0
    for r in rows:
        if r["job"] == "stream":
            ids = con.execute(
                f"SELECT count(*), count(DISTINCT message_id) FROM "
                f"read_parquet('{r['out']}/events/*/*.parquet')"
            ).fetchone()
            checks[f"stream on {r['master']}: each of {fed:,} events once"] = ids == (fed, fed)
    con.close()
    return checks


def plot(rows: list[dict[str, Any]], n: int, target: Path) -> None:
    """A bar per master, a group per job: events/s (thousands, the best round), from the
    measured rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = list(dict.fromkeys(r["job"] for r in rows))
    masters = list(dict.fromkeys(r["master"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    width = 0.8 / len(masters)
    for i, master in enumerate(masters):
        values = [max(r["events"] / r["inner_s"] / 1e3 for r in rows
                      if r["job"] == job and r["master"] == master) for job in jobs]  # fmt: skip
        xs = [j + (i - (len(masters) - 1) / 2) * width for j in range(len(jobs))]
        bars = ax.bar(xs, values, width, label=master)
        ax.bar_label(bars, fmt="%.0f k", fontsize=8)
    labels = {"resessionize": "lull spark resessionize\n(Parquet history)",
              "stream": "lull spark stream --log\n(ingest-only tier's log)"}  # fmt: skip
    ax.set_xticks(range(len(jobs)), [labels.get(j, j) for j in jobs])
    ax.set_ylabel("events/s (thousands), after Spark's start")
    rounds = len({r["round"] for r in rows})
    best = f", best of {rounds} rounds" if rounds > 1 else ""
    ax.set_title(f"lull on Spark, {n:,} events, one 2-core machine{best}")
    ax.legend(title="master")
    fig.tight_layout()
    fig.savefig(target)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
