"""HTTP ingest: `lull serve` side by side with two anchors, in one run, on the same load.

    .venv/bin/python bench/server.py [--seconds 15] [--connections 32] [--servers A,B,C]
        [--port-base 18700] [--lull-args "--some-option X"] [--open 1000000] [--startup]

Servers, each a process of its own, measured one after the other:

- A, decode-only: uvicorn (one process, the uvloop and httptools lull runs on), a plain
  ASGI app that reads the body, `json.loads` it and answers 200 (bench/anchors.py);
- B, decode + DuckDB insert per request: A plus an Arrow insert of the body's events into
  a table of a DuckDB file and a commit per request, one connection, one writer thread;
- C, `lull serve` on a fresh store (its project `default`, sessions on; the web key);
- S (only when asked): a sink that skips each request by its Content-Length and answers
  200, no HTTP server at all: how fast the load generator can go on this machine.

The load (bench/loadgen.py, a separate process: uvloop, raw sockets, pre-encoded
requests): `--connections` keep-alive connections, each sending 100-event bodies (~33 KB,
canonical events with unique message ids, 20,000 profiles, ts the second before) as fast
as answers come back, for `--seconds` after `--warmup` seconds. It counts events
acknowledged (2xx) per second and the p50/p99 acknowledgement latency per request, and
prints each server's and the client's CPU use over the window (a client near 100% of a
core would be the bottleneck).

`--open N`: after C's run, N new profiles with one event each (N open sessions), then
the server's RSS (target: at most 1 GB with 1,000,000 open). `--startup`: how fast
`lull serve` is ready on a store of 10M events (bench/generate.py, imported once with
`lull import --keep-open` and cached in bench/out/) plus 200,000 open sessions (one
recent event for each of its 200,000 profiles, imported just before): the time from
starting the process to `GET /healthz` answering 200, and to a first batch acknowledged
(target: ready within 5 s), at its first start, after a clean stop and after kill -9.
The machine is shared: only figures of one run compare.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
LULL = str(Path(sys.executable).with_name("lull"))
OUT = HERE / "out"
NAMES = {
    "A": "A decode-only (uvicorn + json.loads)",
    "B": "B decode + DuckDB insert per request",
    "C": "C lull serve",
    "S": "S sink (no HTTP parsing: the client's ceiling)",
}
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    key: str
    log: Path
    read: str = ""  # C's read token


def processes(pid: int) -> list[int]:
    """A process and its descendants (`lull serve` is a front and its store process)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            children = Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()
        except OSError:
            children = []
        pids += [int(c) for c in children]
        i += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU time of the process and its descendants (utime + stime, all threads)."""
    total = 0
    for each in processes(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mb(pid: int, tree: bool = True) -> float:
    """Resident memory of the process and (with `tree`) its descendants."""
    total = 0
    for each in processes(pid) if tree else [pid]:
        try:
            status = Path(f"/proc/{each}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return total / 1024


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def get(port: int, path: str, timeout: float = 2) -> int:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        con.request("GET", path)
        return con.getresponse().status
    finally:
        con.close()


def caught_up(port: int, token: str, wait: float = 60.0) -> float:
    """Seconds until a read no longer waits for the store to apply what was acknowledged
    (a read waits up to 2 s for that: one that answers well within it found it done)."""
    started = time.monotonic()
    while time.monotonic() - started < wait:
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            asked = time.monotonic()
            con.request(
                "GET", "/api/v1/sessions?limit=1", headers={"Authorization": f"Bearer {token}"}
            )
            con.getresponse().read()
        finally:
            con.close()
        if time.monotonic() - asked < 1.0:
            break
    return time.monotonic() - started


def post_events(port: int, key: str, events: list[dict[str, Any]]) -> int:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        con.request(
            "POST",
            "/api/v1/events",
            body=json.dumps(events),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        response = con.getresponse()
        response.read()
        return response.status
    finally:
        con.close()


def wait_ready(run: Running, port: int, timeout: float = 120) -> float:
    """Seconds until GET /healthz answers 200 (from now)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if run.proc.poll() is not None:
            raise RuntimeError(f"server exited: {run.log.read_text()[-2000:]}")
        try:
            if get(port, "/healthz", 1) == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"server not ready in {timeout} s: {run.log.read_text()[-2000:]}")


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def start(kind: str, port: int, tmp: Path, lull_args: list[str]) -> Running:
    log = tmp / f"server-{kind}.log"
    if kind == "A":
        proc = spawn([sys.executable, str(HERE / "anchors.py"), "decode", "--port", str(port)], log)
        return Running(proc, "none", log)
    if kind == "S":
        proc = spawn([sys.executable, str(HERE / "anchors.py"), "sink", "--port", str(port)], log)
        return Running(proc, "none", log)
    if kind == "B":
        db = str(tmp / "anchor.duckdb")
        cmd = [sys.executable, str(HERE / "anchors.py"), "duckdb", "--port", str(port)]
        return Running(spawn([*cmd, "--db", db], log), "none", log)
    cmd = [LULL, "--db", str(tmp / "lull.duckdb"), "serve", "--port", str(port), *lull_args]
    proc = spawn(cmd, log)
    deadline = time.time() + 60
    while time.time() < deadline:  # the keys it prints once, as JSON after a line
        text = log.read_text()
        if "{" in text:
            try:
                keys, _ = json.JSONDecoder().raw_decode(text[text.index("{") :])
                return Running(proc, str(keys["keys"]["web"]), log, str(keys["read_token"]))
            except ValueError:
                pass
        if proc.poll() is not None:
            raise RuntimeError(f"lull serve exited: {text[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"lull serve printed no keys: {log.read_text()[-2000:]}")


def stop(run: Running) -> None:
    run.proc.terminate()
    try:
        run.proc.wait(60)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        run.proc.wait()


def loadgen(port: int, key: str, extra: list[str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--port", str(port), "--key", key, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def result_of(client: subprocess.Popen[str], out: IO[str]) -> dict[str, Any]:
    line = out.readline()
    client.wait()
    if client.returncode != 0 or not line:
        raise RuntimeError(f"load generator failed ({client.returncode})")
    result: dict[str, Any] = json.loads(line)
    return result


def measure(run: Running, port: int, args: argparse.Namespace) -> dict[str, Any]:
    client = loadgen(
        port,
        run.key,
        [
            "--connections",
            str(args.connections),
            "--seconds",
            str(args.seconds),
            "--warmup",
            str(args.warmup),
            "--profiles",
            str(args.profiles),
            "--run",
            f"r{random.randrange(16**6):06x}",
        ],
    )
    assert client.stdout is not None
    if client.stdout.readline().strip() != "go":
        raise RuntimeError("load generator did not start")
    time.sleep(args.warmup)
    cpu0 = cpu_seconds(run.proc.pid)
    probe = TimerProbe(port, run) if run.read else None
    time.sleep(args.seconds)
    cpu1 = cpu_seconds(run.proc.pid)
    result = result_of(client, client.stdout)
    if probe is not None:
        result["timer_late_s"] = probe.result()
    result["server_cpu"] = (cpu1 - cpu0) / args.seconds
    result["rss_mb"] = rss_mb(run.proc.pid)
    return result


TIMEOUT_MS = 20 * 60 * 1000  # the default session timeout of a new project


class TimerProbe:
    """While the load runs: one event of a new profile, timed so that its session falls
    due (last event + timeout) 2 s after it is sent; then the session is polled for
    until it reads concluded. `result()`: seconds from the due time to the first read
    that shows it concluded (an upper bound: reads wait for the store to catch up),
    target at most 5 s under full load."""

    def __init__(self, port: int, run: Running) -> None:
        self.port, self.run = port, run
        self.profile = f"timer-probe-{random.randrange(16**8):08x}"
        self.late: float | None = None
        self.thread = threading.Thread(target=self._probe, daemon=True)
        self.thread.start()

    def _probe(self) -> None:
        sent = time.time()
        due = sent + 2.0
        ts = int(due * 1000) - TIMEOUT_MS
        event = {"message_id": self.profile, "profile_id": self.profile, "name": "Probe", "ts": ts}
        if post_events(self.port, self.run.key, [event]) != 200:
            return
        path = f"/api/v1/sessions?profile_id={self.profile}"
        while time.time() < due + 60:
            con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                con.request("GET", path, headers={"Authorization": f"Bearer {self.run.read}"})
                rows = json.loads(con.getresponse().read())
            finally:
                con.close()
            if rows and rows[0]["concluded"]:
                self.late = time.time() - due
                return
            time.sleep(0.1)

    def result(self) -> float | None:
        self.thread.join(90)
        return self.late


def open_sessions(run: Running, port: int, n: int, connections: int) -> None:
    before = rss_mb(run.proc.pid)
    client = loadgen(
        port,
        run.key,
        ["--requests", str(-(-n // 100)), "--distinct", "--connections", str(connections)],
    )
    assert client.stdout is not None
    client.stdout.readline()
    result = result_of(client, client.stdout)
    time.sleep(2)  # let the writer settle
    settled = rss_mb(run.proc.pid)
    waited = caught_up(port, run.read)  # the store holds them all: they are open sessions
    time.sleep(2)
    each = " + ".join(f"{rss_mb(p, tree=False):,.0f}" for p in processes(run.proc.pid))
    print(
        f"open sessions: {result['events']:,} new profiles with one event each in "
        f"{result['seconds']:.1f} s ({result['events_per_s']:,.0f} events/s, statuses "
        f"{result['statuses']}); server RSS {before:,.0f} MB before, "
        f"{settled:,.0f} MB 2 s later, {rss_mb(run.proc.pid):,.0f} MB once the store held them "
        f"all ({waited:.1f} s later; target <= 1024 MB with 1,000,000 open; by process {each} MB)"
    )


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def table(results: dict[str, dict[str, Any]], connections: int) -> str:
    base = results.get("A", {}).get("events_per_s")
    rows = [
        "| server | events/s | p50 ms | p99 ms | ratio to A | server CPU | client CPU | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, r in results.items():
        ratio = f"{r['events_per_s'] / base:.2f}x" if base else "-"
        bad = sum(v for k, v in r["statuses"].items() if not k.startswith("2"))
        rows.append(
            f"| {NAMES[kind]} | {r['events_per_s']:,.0f} | {ms(r['p50_ms'])} | "
            f"{ms(r['p99_ms'])} | {ratio} | {r['server_cpu']:.0%} | {r['client_cpu']:.0%} | "
            f"{bad} |"
        )
    lines = ["\n".join(rows)]
    c = results.get("C")
    if c is not None and base:
        ratio = c["events_per_s"] / base
        p99 = c["p99_ms"] if c["p99_ms"] is not None else float("inf")
        lines.append(
            f"target: lull >= 0.4x A: {ratio:.2f}x -> {'met' if ratio >= 0.4 else 'NOT met'}"
        )
        lines.append(
            f"target: lull p99 <= 50 ms at {connections} connections: {p99:,.1f} ms -> "
            f"{'met' if p99 <= 50 and connections >= 32 else 'NOT met'}"
        )
    if c is not None and "timer_late_s" in c:
        late = c["timer_late_s"]
        shown = "never seen concluded" if late is None else f"{late:,.1f} s after due"
        met = late is not None and late <= 5
        verdict = "met" if met else "NOT met"
        lines.append(f"target: timer <= 5 s late under load: {shown} -> {verdict}")
    return "\n".join(lines)


def lull(*args: str) -> str:
    done = subprocess.run([LULL, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"lull {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def startup(args: argparse.Namespace, tmp: Path, port: int, lull_args: list[str]) -> None:
    """Ready-within-5-s: a store of 10M events and 200,000 open sessions."""
    from sessionize import data_file

    profiles = args.startup_profiles
    OUT.mkdir(exist_ok=True)
    data = data_file(OUT, args.startup_events, profiles, 30, 1)
    base = OUT / f"startup-{args.startup_events}-p{profiles}.duckdb"
    if not base.exists():
        made = base.with_name(base.name + ".part")
        made.unlink(missing_ok=True)
        lull("--db", str(made), "settings", "--sessions", "on")
        started = time.perf_counter()
        lull("--db", str(made), "import", str(data), "--keep-open")
        print(f"  imported {data.name} in {time.perf_counter() - started:.0f} s")
        made.rename(base)
    db = tmp / "startup.duckdb"
    shutil.copyfile(base, db)
    # one recent event for each profile: that many sessions open when the server starts
    now = time.time_ns() // 1_000_000
    tail = tmp / "open.ndjson"
    with tail.open("w") as f:
        for p in range(profiles):
            received = now - 300_000 + p * 240_000 // profiles
            f.write(
                json.dumps(
                    {
                        "message_id": f"open-{now}-{p}",
                        "profile_id": f"u{p:08d}",
                        "name": "App Opened",
                        "ts": received - 150,
                        "source": "android",
                        "received_at": received,
                        "properties": {"screen": "home"},
                    }
                )
                + "\n"
            )
    lull("--db", str(db), "import", str(tail), "--keep-open")
    keys = json.loads(lull("--db", str(db), "project", "create", "bench", "--json"))
    size = db.stat().st_size / 1e9
    print(f"start-up: store {size:.2f} GB ({args.startup_events:,} + {profiles:,} events, "
          f"{profiles:,} open sessions); target: ready within 5 s")  # fmt: skip
    # the first start (state from the store), then a restart after a clean stop (from the
    # checkpoint, when the server saves one), then one after kill -9
    for n, (what, end) in enumerate(
        [("first start", "stop"), ("after a clean stop", "kill"), ("after kill -9", "stop")]
    ):
        log = tmp / f"server-startup-{n}.log"
        started = time.perf_counter()
        cmd = [LULL, "--db", str(db), "serve", "--port", str(port), *lull_args]
        run = Running(spawn(cmd, log), str(keys["keys"]["web"]), log)
        try:
            ready = wait_ready(run, port, timeout=600)
            event = {"message_id": f"first-{now}-{n}", "profile_id": "u00000001",
                     "name": "App Opened", "ts": time.time_ns() // 1_000_000}  # fmt: skip
            status = post_events(port, run.key, [event])
            acked = time.perf_counter() - started
            said = [line for line in log.read_text().splitlines() if "ready in" in line]
            print(
                f"  {what}: /healthz 200 after {ready:.2f} s, a first batch answered {status} "
                f"after {acked:.2f} s ({'met' if acked <= 5 else 'NOT met'}); RSS "
                f"{rss_mb(run.proc.pid):,.0f} MB" + (f"\n    {said[0]}" if said else "")
            )
        finally:
            if end == "kill":
                run.proc.kill()
                run.proc.wait()
            else:
                stop(run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=15, help="measured seconds per server")
    p.add_argument("--warmup", type=float, default=3, help="seconds of load before measuring")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--servers", default="A,B,C", help="a subset of A,B,C (S: sink), in order")
    p.add_argument("--port-base", type=int, default=18700, help="A, B, C, S: + 0, 1, 2, 3")
    p.add_argument("--lull-args", default="", help="extra `lull serve` arguments (one string)")
    p.add_argument("--profiles", type=int, default=20_000)
    p.add_argument("--open", type=int, default=0, help="then hold N open sessions in C")
    p.add_argument("--startup", action="store_true", help="measure start-up on a 10M store")
    p.add_argument("--startup-events", type=int, default=10_000_000)
    p.add_argument("--startup-profiles", type=int, default=200_000)
    p.add_argument("--skip-load", action="store_true", help="only --startup")
    args = p.parse_args(argv)
    kinds = [k.strip().upper() for k in args.servers.split(",") if k.strip()]
    if not kinds or any(k not in NAMES for k in kinds):
        p.error("--servers: a subset of A,B,C (and S)")
    lull_args = shlex.split(args.lull_args)
    OUT.mkdir(exist_ok=True)
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"commit {commit}; {os.cpu_count()} cores; load average {loadavg()}; "
        f"{args.connections} connections, {args.warmup:g} s warm-up + {args.seconds:g} s"
    )
    with tempfile.TemporaryDirectory(prefix="server-", dir=OUT) as name:
        tmp = Path(name)
        results: dict[str, dict[str, Any]] = {}
        for kind in [] if args.skip_load else kinds:
            port = args.port_base + "ABCS".index(kind)
            run = start(kind, port, tmp, lull_args if kind == "C" else [])
            try:
                wait_ready(run, port)
                r = results[kind] = measure(run, port, args)
                print(
                    f"{NAMES[kind]}: {r['events_per_s']:,.0f} events/s, p50 {ms(r['p50_ms'])} "
                    f"ms, p99 {ms(r['p99_ms'])} ms, max {ms(r['max_ms'])} ms, statuses "
                    f"{r['statuses']}, server CPU {r['server_cpu']:.0%}, client CPU "
                    f"{r['client_cpu']:.0%}, RSS {r['rss_mb']:,.0f} MB, load average "
                    f"{loadavg()}" + (f", errors {r['errors']}" if r["errors"] else ""),
                    flush=True,
                )
                if kind == "C" and args.open:
                    open_sessions(run, port, args.open, args.connections)
            finally:
                stop(run)
            time.sleep(1)
        if results:
            body = next(iter(results.values()))["body_bytes"]
            print(f"\nbodies: 100 events, {body:,} bytes a request\n")
            print(table(results, args.connections))
        if args.startup:
            startup(args, tmp, args.port_base + 4, lull_args)
    print(f"load average at the end {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
