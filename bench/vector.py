"""Benchmark: the vectorized live engine against a loop over the exact engine, in one run.

    .venv/bin/python bench/vector.py [--events 1000000] [--profiles 20000]
                                     [--batch 1000,10000] [--seed 1] [--realistic]

Makes up in-order arrivals (each profile's events in time order, sessions of a geometric
number of events seconds to minutes apart, pauses of half an hour to hours between them;
the server receives an event within a second: instants are whole seconds, shared by many
profiles), cuts them into batches of whole instants, and times the engines alone on the
same batches: (a) `vector.step` + `Profiles.put`; (b) per batch and profile, the loop of
`exact.replay` (`exact.conclude_due` before each instant, `exact.apply` on it), over
`Arrival` lists built beforehand (not timed). Prints events/s of each, their ratio, and
checks that every event got the same session id from both. Machines are shared and
noisy: compare the figures of one run side by side, not across runs.

`--realistic` takes bench/generate.py's music app instead (30 days; batched mobile
SDKs, offline sessions and retries hours late, web events overtaking each other, client
clock skew), with R1 and R5's clock fix applied as the server would: it shows how many
profiles of a batch go to the exact engine, and how many events are late, in traffic
that has them.

Exit status: 0 when the engines agree, 1 if not.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import sys
import time

import numpy as np

import generate as music
from lull.engine import exact, vector
from lull.engine.state import Arrival, ProfileState

TIMEOUT = 20 * 60 * 1000
TARGET_EPS = 1_000_000  # the vectorized engine, batches of 10k, one core


def generate(events: int, profiles: int, seed: int) -> dict[str, np.ndarray]:
    """In-order arrivals, in arrival order: code, ts, clock, seq, message_id, source."""
    rng = np.random.default_rng(seed)
    code = np.sort(rng.integers(0, profiles, events)).astype(np.int64)
    # within a session: 1 s to ~5 min apart; a new session (1 in 12): 30 min to hours
    gap = rng.exponential(40_000, events).astype(np.int64) + 1000
    gap = np.minimum(gap, TIMEOUT - 1)
    pause = rng.random(events) < 1 / 12
    gap[pause] = (
        TIMEOUT + 10 * 60_000 + rng.exponential(3 * 3_600_000, pause.sum()).astype(np.int64)
    )
    start = np.ones(events, dtype=bool)
    start[1:] = code[1:] != code[:-1]
    gap[start] = rng.integers(0, 6 * 3_600_000, start.sum())  # when the profile begins
    base = 1_700_000_000_000
    ts = np.cumsum(gap)
    at_start = np.maximum.accumulate(np.where(start, np.arange(events), 0))
    ts = base + ts - ts[at_start] + gap[at_start]
    clock = (ts // 1000 + 1) * 1000  # received within a second, a whole second
    order = np.lexsort((ts, clock))
    return {
        "code": code[order],
        "ts": ts[order],
        "clock": clock[order],
        "seq": np.arange(events, dtype=np.int64),
        "message_id": np.array([f"m{i}" for i in range(events)], dtype=object),
        "source": np.where(code[order] % 3 == 0, "web", "ios").astype(object),
    }


def realistic(events: int, profiles: int, seed: int) -> dict[str, np.ndarray]:
    """bench/generate.py's events, eligible ones only (R1 with the default exclusions),
    event times fixed as R5 says, in arrival order (received_at, then event time)."""
    table, _ = music.build(events, profiles, 30, seed, 1_700_000_000_000)
    name = table["name"].combine_chunks().indices.to_numpy()
    src = table["source"].combine_chunks().indices.to_numpy()
    excluded = np.array([n in music.EXCLUDED for n in music.NAMES])
    keep = (src != music.API) & ~excluded[name]
    ts = table["ts"].to_numpy()[keep]
    received = table["received_at"].to_numpy()[keep]
    sent = table["sent_at"].to_numpy()[keep]
    ts = np.minimum(np.where(sent >= 0, ts + (received - sent), ts), received)
    order = np.lexsort((ts, received))
    code = table["profile"].to_numpy()[keep][order].astype(np.int64)
    n = len(order)
    return {
        "code": code,
        "ts": ts[order],
        "clock": np.maximum.accumulate(received[order]),
        "seq": np.arange(n, dtype=np.int64),
        "message_id": np.array([f"m{i}" for i in range(n)], dtype=object),
        "source": np.array(music.SOURCES, dtype=object)[src[keep][order]],
    }


def batches(clock: np.ndarray, size: int) -> list[tuple[int, int]]:
    """(lo, hi) slices of about `size` rows that do not split an instant."""
    cuts = [0]
    n = len(clock)
    while cuts[-1] < n:
        hi = min(cuts[-1] + size, n)
        if hi < n:  # move the cut to the end of the instant it falls in
            hi = int(np.searchsorted(clock, clock[hi - 1], side="right"))
        cuts.append(hi)
    return list(itertools.pairwise(cuts))


def run_vector(
    data: dict[str, np.ndarray], names: list[str], spans: list[tuple[int, int]]
) -> tuple[float, float, np.ndarray, str, int]:
    """(wall s, cpu s, session id per row, profiles sent to exact, late events)."""
    table = vector.Profiles.new(names)
    ids = np.empty(len(data["code"]), dtype=object)
    slow = late = touched = 0
    outs = []
    # the store's part: the concluded sessions, for the rare event older than a horizon
    # (kept up to date between the timed calls, as the server's store would be)
    history: dict[int, list[tuple[int, int]]] = {}
    wall = cpu = 0.0
    for lo, hi in spans:
        batch = vector.Batch(*(data[k][lo:hi] for k in ("code", "ts", "clock", "seq",
                                                        "message_id", "source")))  # fmt: skip
        w, c = time.perf_counter(), time.process_time()
        out = vector.step(table, batch, TIMEOUT, history=lambda code: history.get(code, []))
        table.put(out.codes, out.after)
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
        outs.append(out)
        done = out.sessions.concluded
        for code, first, last in zip(out.sessions.code[done].tolist(),
                                     out.sessions.first_ts[done].tolist(),
                                     out.sessions.last_ts[done].tolist(), strict=True):  # fmt: skip
            bisect.insort(history.setdefault(code, []), (first, last))
    for (lo, _), out in zip(spans, outs, strict=True):
        got = np.full(len(out.session), None, dtype=object)
        has = out.session >= 0
        got[has] = out.sessions.session_id[out.session[has]]
        ids[lo : lo + len(got)] = got
        slow += len(out.exact)
        touched += len(out.codes)
        late += int(out.late.sum())
    return wall, cpu, ids, f"{slow:,} / {touched:,}", late


def run_exact(
    data: dict[str, np.ndarray], names: list[str], spans: list[tuple[int, int]]
) -> tuple[float, float, np.ndarray]:
    """(wall s, cpu s, session id per row): per batch and profile, exact.replay's loop."""
    feeds = []
    code, ts, clock = (data[k].tolist() for k in ("code", "ts", "clock"))
    message_id, source = data["message_id"], data["source"]
    for lo, hi in spans:
        by_profile: dict[int, tuple[list[int], list[int], list[Arrival]]] = {}
        for i in range(lo, hi):
            rows, clocks, arrivals = by_profile.setdefault(code[i], ([], [], []))
            rows.append(i)
            clocks.append(clock[i])
            arrivals.append(Arrival(ts[i], i, message_id[i], source[i]))
        feeds.append(by_profile)
    states = [ProfileState(name, history=[]) for name in names]
    ids = np.empty(len(code), dtype=object)
    wall, cpu = time.perf_counter(), time.process_time()
    for by_profile in feeds:
        for c, (rows, clocks, arrivals) in by_profile.items():
            state = states[c]
            i, n = 0, len(arrivals)
            while i < n:
                j = i + 1
                while j < n and clocks[j] == clocks[i]:
                    j += 1
                exact.conclude_due(state, clocks[i], TIMEOUT)
                out = exact.apply(state, arrivals[i:j], TIMEOUT)
                ids[rows[i:j]] = out.session_ids
                i = j
    return time.perf_counter() - wall, time.process_time() - cpu, ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--batch", default="1000,10000", help="batch sizes, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--realistic", action="store_true", help="bench/generate.py's app")
    args = parser.parse_args()
    make = realistic if args.realistic else generate
    data = make(args.events, args.profiles, args.seed)
    names = [f"u-{i}" for i in range(args.profiles)]
    n = len(data["code"])
    kind = "bench/generate.py's app, eligible events" if args.realistic else "in-order arrivals"
    print(f"{n:,} events, {args.profiles:,} profiles, timeout 20m, {kind}")
    print(f"{'batch':>7} {'engine':<7} {'wall s':>7} {'cpu s':>6} {'events/s':>10} "
          f"{'per cpu s':>10} {'ratio':>6} {'by cpu':>6}  "
          "profiles to exact / touched, late")  # fmt: skip
    status = 0
    for size in (int(x) for x in args.batch.split(",")):
        spans = batches(data["clock"], size)
        v_wall, v_cpu, v_ids, slow, late = run_vector(data, names, spans)
        e_wall, e_cpu, e_ids = run_exact(data, names, spans)
        differ = int(np.count_nonzero(v_ids != e_ids))
        print(f"{size:>7} {'vector':<7} {v_wall:7.2f} {v_cpu:6.2f} {n / v_wall:10,.0f} "
              f"{n / v_cpu:10,.0f} {e_wall / v_wall:5.1f}x {e_cpu / v_cpu:5.1f}x  "
              f"{slow}, {late:,}")  # fmt: skip
        print(f"{size:>7} {'exact':<7} {e_wall:7.2f} {e_cpu:6.2f} {n / e_wall:10,.0f} "
              f"{n / e_cpu:10,.0f} {1:5.1f}x {1:5.1f}x")  # fmt: skip
        if size == 10_000 and not args.realistic:
            # per core: CPU time, since the machine may be shared (wall time is noisier)
            verdict = "met" if n / v_cpu >= TARGET_EPS else "NOT met"
            print(
                f"        target {TARGET_EPS:,} events per CPU second (vector, batches of "
                f"10k): {verdict}"
            )
        if differ:
            print(f"        {differ} events got different session ids: FAIL")
            status = 1
    print("session ids: " + ("all equal" if status == 0 else "DIFFER"))
    return status


if __name__ == "__main__":
    sys.exit(main())
