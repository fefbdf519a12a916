"""Benchmark: `lull import` and `lull resessionize` against plain DuckDB SQL, in one run.

    python bench/sessionize.py [--events 10000000] [--profiles N] [--keep]

Generates the events (bench/generate.py; the file is cached under bench/out/, which git
ignores), then runs, each as its own process so that its time and peak memory are its
own: (a) `lull import` into a fresh store, (b) `lull resessionize` on that store,
(c) the baseline, plain DuckDB gaps-and-islands over the same file in memory
(bench/baseline.py), and (d) the anchor of issue 10: DuckDB reading the file with typed
columns into a table of a DuckDB *file*, sessionizing it with window functions and
writing a sessions table, in one transaction (`anchor`, below; run as
`python bench/sessionize.py --anchor FILE DB`). Prints a table of times, events/s, peak
RSS, the ratios to the baseline, the anchor and the targets, and checks that lull and the
baseline find the same sessions. Machines are shared and noisy: compare the figures of
one run side by side, not across runs.

Exit status: 0 when the sessions agree (whether or not the targets are met), 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

import baseline
import generate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LULL = str(Path(sys.executable).with_name("lull"))
TIMEOUT_MS = 20 * 60 * 1000

TARGET_IMPORT_RSS_MB = 1500.0  # 1.5 GB (10^9 bytes) at 10M events (issue 10)
TARGET_VS_ANCHOR = 0.8  # lull import's pace / the anchor's, at least (issue 10)
TARGET_RESESSIONIZE_SPEEDUP = 1.5  # the baseline's sessionize step / lull resessionize
# (e): the timeout a second rebuild is made under, where every session changes (the
# rebuild right after the import keeps the sessions the import made as R2 does)
CHANGED_TIMEOUT = "30m"
CHANGED_TIMEOUT_MS = 30 * 60 * 1000

# The anchor (issue 10): what DuckDB alone does for an import, in one transaction on a
# file. Typed columns (no per-field checks), R1 and R5's clock fix as lull applies them,
# R2 by `lag` and a running `sum` per profile ordered by time (ties in no set order: no
# record numbers, which would cost DuckDB a third of the read), a sessions table.
ANCHOR = """
BEGIN TRANSACTION;
CREATE TABLE events AS
SELECT message_id, profile_id, name, source, received_at,
       least(ts + coalesce(received_at - sent_at, 0), received_at) AS ts, properties
FROM read_json({path}, format = 'newline_delimited', columns = {{
    message_id: 'VARCHAR', profile_id: 'VARCHAR', name: 'VARCHAR', ts: 'BIGINT',
    source: 'VARCHAR', received_at: 'BIGINT', sent_at: 'BIGINT', properties: 'JSON'}});
CREATE TABLE sessions AS
WITH gaps AS (
    SELECT profile_id, message_id, ts,
           coalesce(ts - lag(ts) OVER (PARTITION BY profile_id ORDER BY ts) >= {timeout},
                    true) AS new
    FROM events
    WHERE source <> 'api' AND name NOT IN ({excluded})
), numbered AS (
    SELECT *, sum(new::INTEGER) OVER (PARTITION BY profile_id ORDER BY ts
                                      ROWS UNBOUNDED PRECEDING) AS k
    FROM gaps
)
SELECT md5(profile_id || chr(31) || arg_min(message_id, ts)) AS session_id, profile_id,
       min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS events
FROM numbered GROUP BY profile_id, k;
COMMIT;
"""


def anchor(path: str, db: str) -> dict[str, object]:
    """Run the anchor into a fresh DuckDB file; its own time and counts."""
    for f in (Path(db), Path(db + ".wal")):
        f.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(db)
    con.execute("SET enable_progress_bar = false")
    excluded = ", ".join("'" + n + "'" for n in baseline.DEFAULT_EXCLUDED)
    con.execute(ANCHOR.format(path=_q(Path(path)), timeout=TIMEOUT_MS, excluded=excluded))
    row = con.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM sessions)")
    counts = row.fetchone()
    con.close()
    assert counts is not None
    return {"records": int(counts[0]), "sessions": int(counts[1]),
            "total_s": round(time.perf_counter() - started, 3)}  # fmt: skip


@dataclass(slots=True)
class Measured:
    """One child process: its wall time, CPU time, peak RSS and output."""

    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float
    out: str

    def json(self) -> Any:
        return json.loads(self.out)


# A child's peak RSS on Linux starts at its parent's RSS when it was forked, and this
# process holds NumPy and DuckDB memory. So each measured command is started by a small
# launcher process, which reports the command's own usage (os.wait4) and wall time.
_LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    json.dump([code, wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss], f)
"""


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run `cmd` to the end and take its own wall time, CPU time and peak RSS.

    Raises RuntimeError (with the last line of its stderr) if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        usage_file, out_file, err_file = (Path(tmp) / x for x in ("usage", "out", "err"))
        with out_file.open("wb") as out, err_file.open("wb") as err:
            subprocess.run(
                [sys.executable, "-c", _LAUNCHER, str(usage_file), *cmd],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                check=True,
            )
        code, wall, user, system, max_rss_kib = json.loads(usage_file.read_text())
        text, errors = out_file.read_text(), err_file.read_text()
    if code != 0:
        last = errors.strip().splitlines()[-1:] or ["(no message)"]
        raise RuntimeError(f"{' '.join(cmd[1:])} exited with {code}: {last[0]}")
    return Measured(wall, user, system, max_rss_kib * 1024 / 1e6, text)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _q(path: Path) -> str:
    """A path as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def data_file(out_dir: Path, events: int, profiles: int, days: int, seed: int) -> Path:
    """The events file for these parameters: reused if cached, else generated."""
    path = out_dir / f"events-{events}-p{profiles}-d{days}-s{seed}.ndjson"
    meta = path.with_name(path.name + ".meta.json")
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("version") == generate.VERSION and not info.get("iso"):
            print(f"reusing {_shown(path)} (generated in {info['seconds']} s)")
            return path
    print(f"generating {events:,} events for {profiles:,} profiles over {days} days ...")
    summary = generate.generate(path, events=events, profiles=profiles, days=days, seed=seed)
    print(f"  {_shown(path)}: {path.stat().st_size / 1e9:.2f} GB in {summary.seconds} s")
    return path


def _export(lull: list[str], env: dict[str, str], what: str, target: Path) -> None:
    subprocess.run(
        [*lull, "export", what, "--format", "parquet", "-o", str(target)],
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _epoch(col: str) -> str:
    return f"epoch_ms({col}::TIMESTAMPTZ)"


def after_import(events: Path, sessions: Path) -> dict[str, int]:
    """What the live replay left, from `lull export` (the stable interface).

    R5: an event that arrives before its session is concluded gets exactly R2's session,
    a late one gets none; so R2 over the non-late eligible events must give the import's
    sessions.
    """
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    excluded = ", ".join("'" + n + "'" for n in baseline.DEFAULT_EXCLUDED)
    row = con.execute(
        f"""WITH ev AS (SELECT *, file_row_number AS k
                        FROM read_parquet({_q(events)}, file_row_number = true)),
            e AS (
                SELECT coalesce({_epoch("ts")} - lag({_epoch("ts")}) OVER (
                           PARTITION BY profile_id ORDER BY {_epoch("ts")}, k)
                       >= {TIMEOUT_MS}, true) AS new
                FROM ev WHERE source <> 'api' AND name NOT IN ({excluded})
                AND name <> 'Session Concluded' AND NOT late)
            SELECT (SELECT count(*) FROM {_q(sessions)}),
                   (SELECT count(*) FROM {_q(sessions)} WHERE concluded),
                   (SELECT count(*) FROM ev WHERE late),
                   (SELECT count(*) FROM ev WHERE session_id IS NOT NULL
                    AND name <> 'Session Concluded'),
                   (SELECT count(*) FILTER (WHERE new) FROM e),
                   (SELECT count(*) FROM e)"""
    ).fetchone()
    con.close()
    assert row is not None
    keys = ("sessions", "concluded", "late", "with_session", "r2_sessions", "r2_events")
    return dict(zip(keys, (int(v) for v in row), strict=True))


def compare_sessions(sessions: Path, baseline_sessions: Path) -> dict[str, int]:
    """lull's exported sessions vs the baseline's, matched by session id."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    row = con.execute(
        f"""SELECT count(*) FILTER (WHERE l.session_id IS NULL),
                   count(*) FILTER (WHERE b.session_id IS NULL),
                   count(*) FILTER (WHERE l.events <> b.events
                                    OR {_epoch("l.first_ts")} <> b.first_ts
                                    OR {_epoch("l.last_ts")} <> b.last_ts)
            FROM {_q(sessions)} l FULL JOIN {_q(baseline_sessions)} b USING (session_id)"""
    ).fetchone()
    con.close()
    assert row is not None
    return {"only_baseline": int(row[0]), "only_lull": int(row[1]), "differ": int(row[2])}


@dataclass(slots=True)
class Target:
    """The lull code to measure: the installed one (None) or a source tree of a commit."""

    label: str
    pythonpath: str | None


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def target_for(rev: str | None) -> Target:
    """`rev`'s src/ extracted with `git archive` (read-only on the repository).

    Extracted outside bench/, where mypy would find a second `lull` package."""
    if rev is None:
        dirty = _git("status", "--porcelain", "--", "src")
        return Target(f"tree {_git('rev-parse', '--short', 'HEAD')}{'+' if dirty else ''}", None)
    sha = _git("rev-parse", "--short", rev + "^{commit}")
    tree = Path(tempfile.gettempdir()) / f"lull-bench-src-{sha}"
    if not (tree / "src" / "lull").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", sha, "src"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return Target(sha, str(tree / "src"))


@dataclass(slots=True)
class Outcome:
    target: Target
    imp_run: Measured
    res_run: Measured
    imp: dict[str, Any]
    res: dict[str, Any]
    after_import: dict[str, int]
    same: dict[str, int]
    changed_run: Measured | None = None  # (e): resessionize after the timeout change
    changed: dict[str, Any] | None = None
    same_changed: dict[str, int] | None = None


def run_target(
    target: Target,
    path: Path,
    out_dir: Path,
    baseline_sessions: Path,
    keep: bool,
    changed_sessions: Path | None = None,
) -> Outcome:
    """Import into a fresh store, then resessionize it (and, with `changed_sessions`,
    again under CHANGED_TIMEOUT); check each against the rules and the baseline."""
    name = target.label.replace("+", "-dirty").replace(" ", "-")
    db = out_dir / f"bench-{name}.duckdb"
    files = [db, db.with_name(db.name + ".wal")]
    files += [out_dir / f"{name}-{x}.parquet" for x in ("events", "sessions", "rebuilt", "changed")]
    for f in files:
        f.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("LULL_DB", "LULL_PROJECT")}
    if target.pythonpath:
        env["PYTHONPATH"] = target.pythonpath
    lull = [LULL, "--db", str(db)]
    try:
        measure([*lull, "settings", "--sessions", "on"], env)
        print(f"[{target.label}] (a) lull import ...", flush=True)
        imp_run = measure([*lull, "import", str(path)], env)
        _export(lull, env, "events", files[2])
        _export(lull, env, "sessions", files[3])
        checked = after_import(files[2], files[3])
        print(f"[{target.label}] (b) lull resessionize ...", flush=True)
        res_run = measure([*lull, "resessionize"], env)
        _export(lull, env, "sessions", files[4])
        same = compare_sessions(files[4], baseline_sessions)
        out = Outcome(target, imp_run, res_run, imp_run.json(), res_run.json(), checked, same)
        if changed_sessions is not None:
            print(f"[{target.label}] (e) lull resessionize, timeout {CHANGED_TIMEOUT} ...")
            measure([*lull, "settings", "--timeout", CHANGED_TIMEOUT], env)
            out.changed_run = measure([*lull, "resessionize"], env)
            out.changed = out.changed_run.json()
            _export(lull, env, "sessions", files[5])
            out.same_changed = compare_sessions(files[5], changed_sessions)
    finally:
        if not keep:
            for f in files:
                f.unlink(missing_ok=True)
    return out


def _eps(events: int, seconds: float) -> str:
    return f"{events / seconds / 1e6:.2f} M" if seconds > 0 else "-"


WIDTHS = (30, 8, 8, 8, 9, 8, 13, 15)


def _row(cells: list[str]) -> str:
    padded = [
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, WIDTHS, strict=True))
    ]
    return "| " + " | ".join(padded) + " |"


def table(
    n: int,
    base_run: Measured,
    base: dict[str, Any],
    anchor_run: Measured,
    outcomes: list[Outcome],
    base2: dict[str, Any] | None = None,
) -> str:
    """The figures of one run, as a Markdown table."""
    rows = [
        ["step", "wall s", "inner s", "cpu s", "events/s", "peak MB", "vs baseline", "vs target"],
        ["-" * w for w in WIDTHS],
        [
            "baseline: load + sessionize",
            f"{base_run.wall_s:.2f}",
            f"{base['total_s']:.2f}",
            f"{base_run.user_s + base_run.sys_s:.1f}",
            _eps(n, base_run.wall_s),
            f"{base_run.max_rss_mb:.0f}",
            "1",
            "",
        ],
        [
            "baseline: sessionize only",
            "",
            f"{base['sessionize_s']:.2f}",
            "",
            _eps(n, base["sessionize_s"]),
            "",
            "1",
            "",
        ],
        [
            "anchor: typed read to a file",
            f"{anchor_run.wall_s:.2f}",
            f"{anchor_run.json()['total_s']:.2f}",
            f"{anchor_run.user_s + anchor_run.sys_s:.1f}",
            _eps(n, anchor_run.wall_s),
            f"{anchor_run.max_rss_mb:.0f}",
            f"{anchor_run.wall_s / base_run.wall_s:.2f}x time",
            "",
        ],
    ]
    if base2 is not None:
        rows.append([f"baseline: sessionize, {CHANGED_TIMEOUT}", "", f"{base2['sessionize_s']:.2f}",
                     "", _eps(n, base2["sessionize_s"]), "", "1", ""])  # fmt: skip
    for o in outcomes:
        tag = f" [{o.target.label}]" if len(outcomes) > 1 else ""
        rows.append(
            [
                "lull import" + tag,
                f"{o.imp_run.wall_s:.2f}",
                f"{o.imp['seconds']:.2f}",
                f"{o.imp_run.user_s + o.imp_run.sys_s:.1f}",
                _eps(n, o.imp_run.wall_s),
                f"{o.imp_run.max_rss_mb:.0f}",
                f"{o.imp_run.wall_s / base_run.wall_s:.1f}x slower",
                f"{anchor_run.wall_s / o.imp_run.wall_s:.2f}x anchor",
            ]
        )
        rows.append(
            [
                "lull resessionize" + tag,
                f"{o.res_run.wall_s:.2f}",
                f"{o.res['seconds']:.2f}",
                f"{o.res_run.user_s + o.res_run.sys_s:.1f}",
                _eps(n, o.res_run.wall_s),
                f"{o.res_run.max_rss_mb:.0f}",
                f"{base['sessionize_s'] / o.res_run.wall_s:.2f}x faster",
                f"{base['sessionize_s'] / o.res['seconds']:.2f}x inner",
            ]
        )
        if base2 is not None and o.changed_run is not None and o.changed is not None:
            run, own = o.changed_run, o.changed["seconds"]
            step = base2["sessionize_s"]
            rows.append([f"resessionize, {CHANGED_TIMEOUT}{tag}", f"{run.wall_s:.2f}", f"{own:.2f}",
                         f"{run.user_s + run.sys_s:.1f}", _eps(n, run.wall_s),
                         f"{run.max_rss_mb:.0f}", f"{step / run.wall_s:.2f}x faster",
                         f"{step / own:.2f}x inner"])  # fmt: skip
    return "\n".join(_row(r) for r in rows)


def goals(
    o: Outcome, base: dict[str, Any], anchor_run: Measured, base2: dict[str, Any] | None = None
) -> dict[str, bool]:
    """Issue 10's targets (met or not; the exit status does not depend on them)."""
    more = {}
    if base2 is not None and o.changed is not None:
        more[
            f"resessionize after the timeout change >= {TARGET_RESESSIONIZE_SPEEDUP}x faster "
            f"than the baseline's sessionize step at {CHANGED_TIMEOUT} (own times)"
        ] = base2["sessionize_s"] / o.changed["seconds"] >= TARGET_RESESSIONIZE_SPEEDUP
    return more | {
        f"import >= {TARGET_VS_ANCHOR}x the anchor's pace": anchor_run.wall_s / o.imp_run.wall_s
        >= TARGET_VS_ANCHOR,
        # step against step: the baseline's is timed inside its process, after its load, so
        # lull's is its own reported time (after start-up and opening the store); the
        # process's wall time is in the table beside it
        f"resessionize >= {TARGET_RESESSIONIZE_SPEEDUP}x faster than the baseline's sessionize "
        "step (own times)": base["sessionize_s"] / o.res["seconds"] >= TARGET_RESESSIONIZE_SPEEDUP,
        f"import peak RSS <= {TARGET_IMPORT_RSS_MB / 1000:.1f} GB": o.imp_run.max_rss_mb
        <= TARGET_IMPORT_RSS_MB,
    }


def checks(
    o: Outcome, base: dict[str, Any], base2: dict[str, Any] | None = None
) -> dict[str, bool]:
    more = {}
    if base2 is not None and o.changed is not None and o.same_changed is not None:
        more[f"after --timeout {CHANGED_TIMEOUT}: the baseline's sessions at it, the very same"] = (
            o.changed["sessions"] == base2["sessions"] and not any(o.same_changed.values())
        )
    return more | {
        "resessionize sessions == baseline sessions": o.res["sessions"] == base["sessions"],
        "resessionize events == baseline eligible": o.res["events"] == base["eligible"],
        "same session ids, first/last times, event counts": not any(o.same.values()),
        "import sessions == R2 over its non-late eligible events": o.after_import["sessions"]
        == o.after_import["r2_sessions"],
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--anchor"]:
        print(json.dumps(anchor(args[1], args[2])))
        return 0
    p = argparse.ArgumentParser(description="lull import/resessionize vs plain DuckDB")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--profiles", type=int, help="default: events / 50 (200,000 for 10M)")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "out", help="cache and work folder")
    p.add_argument(
        "--rev",
        action="append",
        help="measure this commit's src/ (git archive) instead of the installed tree; "
        "repeat to compare commits side by side",
    )
    p.add_argument("--keep", action="store_true", help="keep the stores and exports")
    p.add_argument("--json", type=Path, help="also write the figures here as JSON")
    p.add_argument(
        "--no-timeout-change",
        action="store_true",
        help=f"skip (e), the rebuild after `lull settings --timeout {CHANGED_TIMEOUT}`",
    )
    a = p.parse_args(argv)
    n = a.events
    profiles = a.profiles or max(1, n // 50)
    a.out.mkdir(parents=True, exist_ok=True)
    path = data_file(a.out, n, profiles, a.days, a.seed)
    targets = [target_for(r) for r in (a.rev or [None])]

    load_before = os.getloadavg()
    sessions_file = a.out / f"baseline-sessions-{n}.parquet"
    print("(c) baseline: plain DuckDB gaps-and-islands ...", flush=True)
    base_run = measure(
        [sys.executable, str(HERE / "baseline.py"), str(path), "--sessions-out", str(sessions_file)]
    )
    base = base_run.json()
    base2, changed_file = None, None
    if not a.no_timeout_change:
        changed_file = a.out / f"baseline-sessions-{n}-{CHANGED_TIMEOUT}.parquet"
        print(f"(c) baseline again, timeout {CHANGED_TIMEOUT} ...", flush=True)
        again = [str(path), "--timeout-ms", str(CHANGED_TIMEOUT_MS), "--sessions-out"]
        base2 = measure(
            [sys.executable, str(HERE / "baseline.py"), *again, str(changed_file)]
        ).json()
    print("(d) anchor: typed read into a DuckDB file + window sessionize ...", flush=True)
    anchor_db = a.out / "anchor.duckdb"
    anchor_run = measure([sys.executable, str(HERE / "sessionize.py"), "--anchor", str(path),
                          str(anchor_db)])  # fmt: skip
    for f in (anchor_db, anchor_db.with_name(anchor_db.name + ".wal")):
        f.unlink(missing_ok=True)
    outcomes: list[Outcome] = []
    failed: list[str] = []
    for t in targets:
        try:
            outcomes.append(run_target(t, path, a.out, sessions_file, a.keep, changed_file))
        except (RuntimeError, subprocess.CalledProcessError) as e:
            failed.append(f"[{t.label}] failed: {e}")
            print(failed[-1], flush=True)
    if not a.keep:
        sessions_file.unlink(missing_ok=True)
        if changed_file is not None:
            changed_file.unlink(missing_ok=True)

    print()
    print(
        f"{n:,} events, {profiles:,} profiles, {a.days} days; {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, duckdb {duckdb.__version__}, "
        f"lull {', '.join(t.label for t in targets)}"
    )
    print(table(n, base_run, base, anchor_run, outcomes, base2))
    load = " / ".join(f"{x:.2f}" for x in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before / after: {load}")
    print("events/s: all input events / wall time of the process (start-up included);")
    print("inner s: the time the command reports itself (baseline: its own phase timer).")
    print("vs target: import = the anchor's wall time / lull's (pace ratio); resessionize =")
    print("the baseline's sessionize step / lull's own reported time (start-up excluded).")
    for o in outcomes:  # CPU is steadier than wall time when other work shares the cores
        cpu = (o.imp_run.user_s + o.imp_run.sys_s) / (anchor_run.user_s + anchor_run.sys_s)
        print(f"[{o.target.label}] import CPU time / the anchor's: {cpu:.2f}x "
              f"(pace by CPU {1 / cpu:.2f}x the anchor)")  # fmt: skip
    print(f"\nbaseline: {json.dumps(base)}")
    if base2 is not None:
        print(f"baseline at {CHANGED_TIMEOUT}: {json.dumps(base2)}")
    print(f"anchor: {json.dumps(anchor_run.json())}")
    for line in failed:
        print(line)
    ok = not failed
    for o in outcomes:
        print(f"\n[{o.target.label}]")
        print(f"import: {json.dumps(o.imp)}")
        print(f"after import: {json.dumps(o.after_import)}")
        print(f"resessionize: {json.dumps(o.res)}")
        if o.changed is not None:
            print(f"resessionize at {CHANGED_TIMEOUT}: {json.dumps(o.changed)}")
        print(f"sessions, lull vs baseline: {json.dumps(o.same)}")
        for what, good in checks(o, base, base2).items():
            print(f"check: {what}: {'ok' if good else 'NO'}")
            ok = ok and good
        for what, good in goals(o, base, anchor_run, base2).items():
            print(f"target: {what}: {'met' if good else 'NOT met'}")
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "events": n,
                    "profiles": profiles,
                    "days": a.days,
                    "baseline": {**base, "wall_s": base_run.wall_s, "rss_mb": base_run.max_rss_mb},
                    "baseline_changed": base2,
                    "anchor": {
                        **anchor_run.json(),
                        "wall_s": anchor_run.wall_s,
                        "rss_mb": anchor_run.max_rss_mb,
                    },
                    "lull": [
                        {
                            "target": o.target.label,
                            "import": {
                                **o.imp,
                                "wall_s": o.imp_run.wall_s,
                                "rss_mb": o.imp_run.max_rss_mb,
                            },
                            "resessionize": {
                                **o.res,
                                "wall_s": o.res_run.wall_s,
                                "rss_mb": o.res_run.max_rss_mb,
                            },
                            "after_import": o.after_import,
                            "resessionize_changed": None
                            if o.changed_run is None
                            else {
                                **(o.changed or {}),
                                "wall_s": o.changed_run.wall_s,
                                "rss_mb": o.changed_run.max_rss_mb,
                                "compare": o.same_changed,
                            },
                            "compare": o.same,
                            "checks": checks(o, base, base2),
                            "targets": goals(o, base, anchor_run, base2),
                        }
                        for o in outcomes
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
