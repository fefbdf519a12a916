"""The stream's bucketed step (`spark.bucket.apply`, state through `spark.state_codec`)
equals `exact.replay` run per profile, micro-batch by micro-batch.

The reference is what the stream did per profile before it was keyed by buckets: each
profile's rows of a micro-batch in arrival order (received_at, origin, position), each
arriving at max(received_at, the profile's clock), replayed by `exact.replay` with the
profile's whole history; then the profile's session concluded if it fell due before its
clock, or by the stream's clock (the watermark: the latest received_at of the batches
before). The bucket goes through its byte encoding between batches, as it does in
Spark's state store, so every batch is also a restart from the checkpoint.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.engine import exact
from lull.engine.state import Arrival, ProfileState, Session
from lull.errors import BadInput
from lull.model import DEFAULT_EXCLUDED, Settings
from lull.spark import bucket, state_codec
from test_properties import BASE, Event, T, any_order
from test_vector import many_profiles

SETTINGS = Settings(sessions_enabled=True, timeout_ms=T)
BUCKETS = 7
SessionRow = tuple[str, str, int, int, int, str]
Row = tuple[Event, str, int]  # the event, its origin and its position


def row_of(s: Session) -> SessionRow:
    return (s.profile_id, s.session_id, s.first_ts, s.last_ts, s.events, s.source)


def rows_of(b: bucket.Bucket, s: Any) -> list[SessionRow]:
    return sorted(
        (str(b.table.profile_id[c]), str(i), int(f), int(la), int(n), str(src))
        for c, i, f, la, n, src in zip(s.code, s.session_id, s.first_ts, s.last_ts, s.events,
                                       s.source, strict=True)
    )  # fmt: skip


def as_rows(rows: list[Row]) -> bucket.Rows:
    def objects(values: list[Any]) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    events = [e for e, _, _ in rows]
    return bucket.Rows(
        objects([e.message_id for e in events]),
        objects([e.profile_id for e in events]),
        objects([DEFAULT_EXCLUDED[0] if e.kind == "excluded" else "Play" for e in events]),
        objects([e.source for e in events]),
        np.array([min(e.ts, e.received_at) for e in events], dtype=np.int64),
        np.array([e.received_at for e in events], dtype=np.int64),
        objects([o for _, o, _ in rows]),
        np.array([p for _, _, p in rows], dtype=np.int64),
    )


class Reference:
    """The per-profile stream: exact.replay with the whole history, per micro-batch."""

    def __init__(self, late_after: int | None = None) -> None:
        self.states: dict[str, ProfileState] = {}
        self.clock: dict[str, int] = {}
        self.late_after = late_after

    def batch(
        self, rows: list[Row], watermark: int
    ) -> tuple[dict[str, tuple[str | None, bool]], list[SessionRow], list[SessionRow]]:
        marks: dict[str, tuple[str | None, bool]] = {}
        concluded: list[SessionRow] = []
        ordered = sorted(rows, key=lambda x: (x[0].received_at, x[1], x[2]))
        mine: dict[str, list[Event]] = {}
        for e, _, _ in ordered:
            mine.setdefault(e.profile_id, []).append(e)
        for p, events in mine.items():
            state = self.states.setdefault(p, ProfileState(p, history=[]))
            clock = self.clock.get(p, -1)
            instants = [max(e.received_at, clock) for e in events]
            self.clock[p] = instants[-1]
            now = max(instants[-1], watermark + 1)
            horizon, late_after = state.horizon, self.late_after
            stale = {
                i for i, e in enumerate(events)
                if late_after is not None and horizon is not None and e.eligible
                and min(e.ts, e.received_at) < min(instants[i] - late_after, horizon)
            }  # fmt: skip
            take = [i for i, e in enumerate(events) if e.eligible and i not in stale]
            arrivals = [
                Arrival(min(events[i].ts, events[i].received_at), i, events[i].message_id,
                        events[i].source)
                for i in take
            ]  # fmt: skip
            done = exact.replay(state, [instants[i] for i in take], arrivals, T, now - 1)
            concluded += [row_of(s) for s, _ in done.concluded]
            for i, e in enumerate(events):
                marks[e.message_id] = (None, i in stale)
            for i, sid in zip(take, done.session_ids, strict=True):
                marks[events[i].message_id] = (sid, sid is None)
        for p, state in self.states.items():
            if p not in mine:
                due = exact.conclude_due(state, max(self.clock[p], watermark + 1), T)
                if due is not None:
                    concluded.append(row_of(due))
        opened = [row_of(s) for p in mine if (s := self.states[p].open) is not None]
        if self.late_after is not None:  # a profile quiet past the late horizon starts anew
            line = watermark - self.late_after
            for p, state in list(self.states.items()):
                clock = self.clock[p]
                passed = state.horizon is None or state.horizon <= line
                if state.open is None and passed and clock < line:
                    del self.states[p], self.clock[p]
        return marks, sorted(concluded), sorted(opened)


def run(events: list[Event], cuts: list[int], late_after: int | None = None) -> bucket.Bucket:
    """Feed the events (in file order) as micro-batches cut at `cuts`, then one batch
    with no rows (the timers); the bucket and the reference must agree at every step.
    With `late_after`, the bucket forgets what it may after each batch (the reference
    keeps every session, and drops only the profiles the rule says)."""
    rows = [(e, f"f{i // 5}", i % 5) for i, e in enumerate(events)]
    bounds = [0, *sorted(set(cuts)), len(rows)]
    batches = [rows[a:b] for a, b in itertools.pairwise(bounds) if b > a] + [[]]
    data = state_codec.encode(bucket.Bucket(), BUCKETS)
    reference = Reference(late_after)
    watermark = 0
    for batch in batches:
        b = state_codec.decode(data, BUCKETS)  # as Spark's state store hands it back
        given = as_rows(batch) if batch else None
        done = bucket.apply(b, given, watermark, SETTINGS, late_after)
        marks, concluded, opened = reference.batch(batch, watermark)
        got = {
            e.message_id: (sid, bool(late))
            for (e, _, _), sid, late in zip(batch, done.session_id, done.late, strict=True)
        }
        assert got == marks
        assert rows_of(b, done.concluded) == concluded
        assert rows_of(b, done.opened) == opened
        lasts = [s.open.last_ts for s in reference.states.values() if s.open is not None]
        assert done.timer == (min(lasts) + T - 1 if lasts else None)
        if late_after is not None:
            bucket.forget(b, watermark, late_after, T)
            assert sorted(map(str, b.table.profile_id)) == sorted(reference.states)
            clock = b.clock[b.history[0]]
            assert (b.history[2] + T > clock - late_after).all()  # the others forgotten
        data = state_codec.encode(b, BUCKETS)
        watermark = max([watermark, *(e.received_at for e, _, _ in batch)])
    return state_codec.decode(data, BUCKETS)


@settings(max_examples=200, deadline=None)
@given(many_profiles(), st.lists(st.integers(0, 40), max_size=4))
def test_bucket_equals_exact_replay_per_profile(events: list[Event], cuts: list[int]) -> None:
    run(events, cuts)


@settings(max_examples=50, deadline=None)
@given(any_order(), st.lists(st.integers(0, 25), max_size=3))
def test_bucket_equals_exact_replay_in_chunks(events: list[Event], cuts: list[int]) -> None:
    """With chunks of 2 rows, every instant boundary is a cut of `vector.step`."""
    chunk = bucket.CHUNK
    bucket.CHUNK = 2
    try:
        run(events, cuts)
    finally:
        bucket.CHUNK = chunk


@settings(max_examples=200, deadline=None)
@given(
    many_profiles(), st.lists(st.integers(0, 40), max_size=6), st.sampled_from([T, 2 * T, 5 * T])
)
def test_forgetting_past_the_late_horizon_changes_no_answer(
    events: list[Event], cuts: list[int], late_after: int
) -> None:
    """The sessions concluded more than the late horizon before their profile's clock
    are dropped, and profiles quiet past it; every answer stays the reference's (which
    keeps the whole history), the late-horizon rule applied to both."""
    run(events, cuts, late_after)


def test_a_long_run_holds_a_late_horizon_of_sessions() -> None:
    """Ten profiles, a session each every 3 timeouts for 200 timeouts, one batch each
    timeout: the state holds the sessions of the last late horizon only, and a profile
    that went quiet is dropped; an event that comes more than the horizon after its time
    and before its profile's horizon is late, one within it is laid out as ever."""
    events = [
        Event(f"m{k}-{p}", f"u{p}", BASE + k * 3 * T + p, BASE + k * 3 * T + p + 1000, "ok")
        for k in range(67)
        for p in range(10 if k < 40 else 9)  # u9 goes quiet after 40 sessions
    ]
    late_after = 12 * T
    cuts = [i for i in range(1, len(events)) if events[i].ts // T != events[i - 1].ts // T]
    b = run(events, cuts, late_after)
    assert sorted(map(str, b.table.profile_id)) == [f"u{p}" for p in range(9)]
    assert b.history.shape[1] <= 9 * (late_after // (3 * T) + 1)  # of 9 * 66 concluded
    now = BASE + 67 * 3 * T
    old = [Event("way-late", "u1", BASE + 100 * T + 1, now, "ok"),  # in a gap, 100 T back
           Event("in-time", "u2", now - T // 2, now, "ok")]  # fmt: skip
    done = bucket.apply(b, as_rows([(e, "z", i) for i, e in enumerate(old)]), now, SETTINGS,
                        late_after)  # fmt: skip
    assert done.late.tolist() == [True, False] and done.session_id[1] is not None


def test_a_late_event_after_a_restart_needs_the_history_kept_in_the_state() -> None:
    """The first session is concluded in batch 1; in batch 2 (a restart) an event older
    than the horizon must be laid out against it: late, not a session of its own."""
    e = [
        Event("a", "u", BASE, BASE, "ok"),
        Event("b", "u", BASE + 5 * T, BASE + 5 * T, "ok"),  # concludes a's session
        Event("c", "u", BASE + T // 2, BASE + 6 * T, "ok"),  # within a's session: late
        Event("d", "u", BASE + 3 * T, BASE + 6 * T, "ok"),  # alone: a session of its own
    ]
    run(e, [2])
    data = state_codec.encode(bucket.Bucket(), BUCKETS)
    b = state_codec.decode(data, BUCKETS)
    bucket.apply(b, as_rows([(x, "f", i) for i, x in enumerate(e[:2])]), 0, SETTINGS)
    b = state_codec.decode(state_codec.encode(b, BUCKETS), BUCKETS)
    assert b.past(0) == [(BASE, BASE)]
    done = bucket.apply(b, as_rows([(x, "g", i) for i, x in enumerate(e[2:])]), BASE, SETTINGS)
    assert done.late.tolist() == [True, False]
    assert done.session_id[1] is not None


def test_a_checkpoint_started_with_other_buckets_is_refused() -> None:
    data = state_codec.encode(bucket.Bucket(), 16)
    with pytest.raises(BadInput, match="--buckets 16"):
        state_codec.decode(data, 32)
