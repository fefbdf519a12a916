"""Properties: every engine gives the same sessions on the same events.

- With no late arrival, `lull import` (the vectorized live engine), `lull resessionize`
  (set-wise R2) and a plain reference of R2 written here agree exactly.
- With any delivery order (late events included), `lull import` (the vectorized engine
  with its exact fallback; one file, or two parts with --keep-open) agrees with a
  per-profile `exact.replay` on R5's clock, and `lull resessionize` afterwards agrees
  with R2. (test_replay.py checks the import's engine against `exact.replay` directly,
  without a store, on many more examples.)

Each example gets its own project in one shared store (opening a new store per example
costs more than the example).
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lull.engine import exact
from lull.engine.state import Arrival, ProfileState, Session
from lull.model import DEFAULT_EXCLUDED, format_time, session_id_for
from lullrun import lull, lull_process, write_events

T = 60_000  # the timeout: the smallest allowed, 1m
BASE = 1_700_000_000_000  # 2023-11-14: every session is due long before the real now
END = BASE + 10**10  # a clock reading after every event's due (and before the real now)
GAPS = st.one_of(st.sampled_from([0, 1, T - 1, T, T + 1]), st.integers(0, 2 * T))
DELAYS = st.one_of(st.sampled_from([0, 1, T - 1, T, T + 1, 3 * T]), st.integers(0, 4 * T))
KINDS = st.sampled_from(["ok", "ok", "ok", "ok", "ok", "excluded", "api"])
EXAMPLES = settings(max_examples=25, deadline=None)  # each example runs `lull` 6-8 times


@dataclass(frozen=True, slots=True)
class Event:
    message_id: str
    profile_id: str
    ts: int
    received_at: int
    kind: str  # ok (eligible), excluded (name excluded by default), api (source api)

    @property
    def eligible(self) -> bool:
        return self.kind == "ok"

    @property
    def source(self) -> str:
        return "api" if self.kind == "api" else "ios" if self.ts % 2 else "web"

    def record(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "profile_id": self.profile_id,
            "name": DEFAULT_EXCLUDED[0] if self.kind == "excluded" else "Song Played",
            "ts": self.ts,
            "source": self.source,
            "received_at": self.received_at,
        }


Sessions = list[dict[str, Any]]
Mapping = dict[str, tuple[str | None, bool]]  # message_id -> (session_id, late)


@st.composite
def timelines(draw: st.DrawFn) -> list[list[tuple[int, str]]]:
    """Per profile: (event time, kind) in time order, with gaps around the timeout."""
    profiles = []
    for _ in range(draw(st.integers(1, 3))):
        t = BASE + draw(st.sampled_from([0, 1, T])) + draw(st.integers(0, 2 * T))
        events = []
        for _ in range(draw(st.integers(1, 7))):
            events.append((t, draw(KINDS)))
            t += draw(GAPS)
        profiles.append(events)
    return profiles


@st.composite
def in_order(draw: st.DrawFn) -> list[Event]:
    """Events received in time order per profile, each before its session falls due.

    An event that joins the previous eligible one (gap < timeout) arrives at the latest
    at that one's time + timeout, the instant it falls due; the file is in arrival order.
    """
    events = []
    for p, timeline in enumerate(draw(timelines())):
        prev_ts: int | None = None
        prev_r = 0
        for i, (ts, kind) in enumerate(timeline):
            r = ts + draw(DELAYS)
            if kind == "ok":
                r = max(prev_r, min(r, ts + T))
                if prev_ts is not None and ts - prev_ts < T:
                    r = min(r, prev_ts + T)
                prev_ts, prev_r = ts, r
            events.append(Event(f"p{p}-{i}", f"p{p}", ts, r, kind))
    return sorted(events, key=lambda e: (e.received_at, e.ts))


@st.composite
def any_order(draw: st.DrawFn) -> list[Event]:
    """Events received after random delays, in a file order close to arrival order.

    A profile is delivered either in time order (each event after the previous one,
    some of them around the instant the previous one falls due) or shuffled.
    """
    keyed = []
    for p, timeline in enumerate(draw(timelines())):
        ordered = draw(st.booleans())
        prev_ts, prev_r = None, 0
        for i, (ts, kind) in enumerate(timeline):
            r = ts + draw(DELAYS)
            if prev_ts is not None and draw(st.integers(0, 2)) == 0:
                r = max(ts, prev_ts + T + draw(st.sampled_from([-1, 0, 1])))
            if ordered:
                r = max(r, prev_r)
            prev_ts, prev_r = ts, r
            jitter = 0 if ordered else draw(st.sampled_from([0, 0, -T, T, -3 * T]))
            event = Event(f"p{p}-{i}", f"p{p}", ts, r, kind)
            keyed.append((r + jitter, i if ordered else draw(st.integers(0, 3)), event))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [e for _, _, e in keyed]


def session_record(s: Session, concluded: bool) -> dict[str, Any]:
    """A session as `lull export sessions` writes it."""
    return {
        "session_id": s.session_id,
        "profile_id": s.profile_id,
        "first_ts": format_time(s.first_ts),
        "last_ts": format_time(s.last_ts),
        "length_s": s.length_s,
        "events": s.events,
        "source": s.source,
        "concluded": concluded,
    }


def r2(events: list[Event]) -> tuple[Sessions, Mapping]:
    """R2, plainly: per profile, eligible events by (time, arrival); a gap >= T splits."""
    mapping: Mapping = {e.message_id: (None, False) for e in events}
    by_profile: dict[str, list[tuple[int, int, Event]]] = {}
    for seq, e in enumerate(events):
        if e.eligible:
            by_profile.setdefault(e.profile_id, []).append((e.ts, seq, e))
    sessions: list[Session] = []
    for profile_id, timeline in by_profile.items():
        timeline.sort(key=lambda x: (x[0], x[1]))
        for ts, _, e in timeline:
            if (
                not sessions
                or sessions[-1].profile_id != profile_id
                or ts - sessions[-1].last_ts >= T
            ):
                sid = session_id_for(profile_id, e.message_id)
                sessions.append(Session(sid, profile_id, ts, ts, 0, e.source))
            sessions[-1].last_ts = ts
            sessions[-1].events += 1
            mapping[e.message_id] = (sessions[-1].session_id, False)
    return sorted_sessions([session_record(s, True) for s in sessions]), mapping


def replayed(events: list[Event]) -> tuple[Sessions, Mapping]:
    """R5's clock by hand: the running max of received_at in file order, fed per profile
    to the pure exact engine, then run on to END."""
    clock = 0
    feeds: dict[str, tuple[list[int], list[Arrival]]] = {}
    for seq, e in enumerate(events):
        clock = max(clock, e.received_at)
        if e.eligible:
            clocks, arrivals = feeds.setdefault(e.profile_id, ([], []))
            clocks.append(clock)
            arrivals.append(Arrival(min(e.ts, e.received_at), seq, e.message_id, e.source))
    mapping: Mapping = {e.message_id: (None, False) for e in events}
    sessions = []
    for profile_id, (clocks, arrivals) in feeds.items():
        state = ProfileState(profile_id, history=[])
        out = exact.replay(state, clocks, arrivals, T, END)
        for a, sid in zip(arrivals, out.session_ids, strict=True):
            mapping[a.message_id] = (sid, sid is None)
        sessions += [session_record(s, True) for s, _ in out.concluded]
        if state.open is not None:
            sessions.append(session_record(state.open, False))
    return sorted_sessions(sessions), mapping


def sorted_sessions(sessions: Sessions) -> Sessions:
    return sorted(sessions, key=lambda s: (s["profile_id"], s["first_ts"], s["session_id"]))


class Project:
    """A fresh project (sessions on, timeout 1m) in a shared store: one per example."""

    numbers = itertools.count()

    def __init__(self, db: Path) -> None:
        self.db, self.name = db, f"x{next(self.numbers)}"
        self.run("settings", "--sessions", "on", "--timeout", "1m")

    def run(self, *args: str) -> str:
        done = lull(self.db, *args, "--project", self.name)
        assert done.code == 0, done.err
        return done.out

    def load(self, events: list[Event], *args: str) -> None:
        path = self.db.with_name(f"{self.name}-{next(self.numbers)}.ndjson")
        self.run("import", str(write_events(path, [e.record() for e in events])), *args)

    def export(self, what: str) -> list[dict[str, Any]]:
        path = self.db.with_name(f"{self.name}-{what}.ndjson")
        self.run("export", what, "-o", str(path))
        return [json.loads(line) for line in path.read_text().splitlines()]

    def stored(self) -> tuple[Sessions, Mapping]:
        """What the store holds: its sessions, and each event's (session_id, late)."""
        mapping: Mapping = {
            e["message_id"]: (e["session_id"], e["late"])
            for e in self.export("events")
            if e["name"] != "Session Concluded"
        }
        return sorted_sessions(self.export("sessions")), mapping


@EXAMPLES
@given(in_order())
def test_import_and_resessionize_give_r2_when_nothing_is_late(
    shared_db: Path, events: list[Event]
) -> None:
    project = Project(shared_db)
    project.load(events)
    assert project.stored() == r2(events)
    project.run("resessionize")
    assert project.stored() == r2(events)


@settings(max_examples=100, deadline=None)
@given(in_order())
def test_reference_replay_gives_r2_when_nothing_is_late(events: list[Event]) -> None:
    assert replayed(events) == r2(events)


@settings(max_examples=100, deadline=None)
@given(any_order(), st.randoms(use_true_random=False))
def test_exact_replay_applies_an_instant_as_a_set(events: list[Event], rng: random.Random) -> None:
    # the same arrivals (same arrival numbers), listed in another order within each instant
    clocks = list(itertools.accumulate((e.received_at for e in events), max))
    feeds: dict[str, list[tuple[int, Arrival]]] = {}
    for seq, (clock, e) in enumerate(zip(clocks, events, strict=True)):
        if e.eligible:
            feeds.setdefault(e.profile_id, []).append(
                (clock, Arrival(e.ts, seq, e.message_id, e.source))
            )
    for profile_id, feed in feeds.items():
        shuffled = sorted(feed, key=lambda x: (x[0], rng.random()))
        runs = []
        for order in (feed, shuffled):
            state = ProfileState(profile_id, history=[])
            out = exact.replay(state, [c for c, _ in order], [a for _, a in order], T, END)
            ids = dict(zip((a.message_id for _, a in order), out.session_ids, strict=True))
            runs.append((ids, [(session_record(s, True), at) for s, at in out.concluded]))
        assert runs[0] == runs[1]


@EXAMPLES
@given(any_order())
def test_import_matches_exact_replay_and_resessionize_r2_in_any_order(
    shared_db: Path, events: list[Event]
) -> None:
    project = Project(shared_db)
    project.load(events)
    assert project.stored() == replayed(events)
    project.run("resessionize")
    assert project.stored() == r2(events)


@EXAMPLES
@given(any_order(), st.data())
def test_import_in_two_parts_matches_one_replay(
    shared_db: Path, events: list[Event], data: st.DataObject
) -> None:
    # the second part arrives after the first: its receive times are moved past the
    # first part's last one if needed (they change for the reference too)
    cut = data.draw(st.integers(0, len(events)))
    first_end = max((e.received_at for e in events[:cut]), default=0)
    events = events[:cut] + [
        Event(e.message_id, e.profile_id, e.ts, max(e.received_at, first_end + 1), e.kind)
        for e in events[cut:]
    ]
    project = Project(shared_db)
    project.load(events[:cut], "--keep-open")
    project.load(events[cut:])
    assert project.stored() == replayed(events)


def test_import_in_a_real_process_gives_r2(db_path: Path) -> None:
    rng = random.Random(20261127)
    events = []
    for p in range(20):
        t = BASE + rng.randrange(3 * T)
        for i in range(rng.randrange(1, 15)):
            events.append(Event(f"p{p}-{i}", f"p{p}", t, t, rng.choice(["ok"] * 6 + ["api"])))
            t += rng.choice([0, 1, T - 1, T, T + 1, rng.randrange(2 * T)])
    events.sort(key=lambda e: e.received_at)
    assert lull_process(db_path, "settings", "--sessions", "on", "--timeout", "1m").code == 0
    stdin = "".join(json.dumps(e.record()) + "\n" for e in events)
    done = lull_process(db_path, "import", "-", stdin=stdin)
    assert done.code == 0, done.err
    assert json.loads(done.out)["late"] == 0
    sessions = lull_process(db_path, "export", "sessions")
    assert sessions.code == 0, sessions.err
    exported = lull_process(db_path, "export", "events")
    assert exported.code == 0, exported.err
    mapping: Mapping = {}
    for line in exported.out.splitlines():
        e = json.loads(line)
        if e["name"] != "Session Concluded":
            mapping[e["message_id"]] = (e["session_id"], e["late"])
    got = sorted_sessions([json.loads(line) for line in sessions.out.splitlines()])
    assert (got, mapping) == r2(events)
