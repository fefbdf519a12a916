"""The vectorized live engine (`lull.engine.vector`) equals `exact.replay`, batch by batch.

A `Twin` runs both: the vectorized engine on a `Profiles` table, and the exact engine on
one `ProfileState` per profile (history loaded), fed the same batches (each profile's
arrivals of a batch through `exact.replay`, with the batch's instants as its clock) and
the same timer calls. After every call it checks that they agree on every row (session
id, late), on the sessions concluded and the open sessions touched, and on every
profile's state. The property tests draw arrivals with the strategies of
test_properties.py (ties, late, out of order), for several profiles at once, cut into
batches at instant boundaries, with timer calls in between; at the end, the whole run
must also equal one replay of all the events (`test_properties.replayed`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from lull.engine import exact, vector
from lull.engine.order import by_code_time_seq
from lull.engine.state import NONE, Arrival, ProfileState, Session
from lull.model import session_id_for
from test_properties import (
    END,
    Event,
    T,
    any_order,
    in_order,
    replayed,
    session_record,
    sorted_sessions,
)

SessionRow = tuple[str, str, int, int, int, str]  # profile, id, first, last, events, source
_BEFORE_ALL = -(2**62)  # an `end` for exact.replay that concludes nothing


def session_row(s: Session) -> SessionRow:
    return (s.profile_id, s.session_id, s.first_ts, s.last_ts, s.events, s.source)


def state_row(state: ProfileState) -> tuple[Any, ...]:
    o = state.open
    return (None if o is None else session_row(o), state.horizon, state.latest)


def table_rows(sessions: vector.Sessions, table: vector.Profiles, done: bool) -> list[SessionRow]:
    at = np.flatnonzero(sessions.concluded == done)
    return sorted(
        (
            str(table.profile_id[sessions.code[i]]),
            str(sessions.session_id[i]),
            int(sessions.first_ts[i]),
            int(sessions.last_ts[i]),
            int(sessions.events[i]),
            str(sessions.source[i]),
        )
        for i in at
    )


class Twin:
    """The vectorized engine and the exact one, side by side, on the same profiles."""

    def __init__(self, profiles: Sequence[str], timeout: int = T) -> None:
        self.timeout = timeout
        self.profiles = list(profiles)
        self.code = {p: i for i, p in enumerate(self.profiles)}
        self.table = vector.Profiles.new(self.profiles)
        self.states = {p: ProfileState(p, history=[]) for p in self.profiles}
        self.concluded: list[SessionRow] = []  # every session concluded so far (vector)
        self.marks: dict[str, tuple[str | None, bool]] = {}  # message_id -> (id, late)
        self.slow = 0  # profiles sent to the exact engine
        self.fast_late = 0  # late events found on the fast path

    def batch(
        self,
        rows: Sequence[tuple[str, int, int, int, str, str, bool]],
        now: int | None = None,
        *,
        with_history: bool = True,
    ) -> vector.Step:
        """rows: (profile, ts, clock, seq, message_id, source, eligible), arrival order."""
        history = {self.code[p]: list(s.history or []) for p, s in self.states.items()}
        batch = vector.Batch(
            np.array([self.code[r[0]] for r in rows], dtype=np.int64),
            np.array([r[1] for r in rows], dtype=np.int64),
            np.array([r[2] for r in rows], dtype=np.int64),
            np.array([r[3] for r in rows], dtype=np.int64),
            np.array([r[4] for r in rows], dtype=object),
            np.array([r[5] for r in rows], dtype=object),
            np.array([r[6] for r in rows], dtype=bool),
        )
        out = vector.step(
            self.table,
            batch,
            self.timeout,
            now=now,
            history=history.__getitem__ if with_history else None,
        )

        # the reference: each profile's eligible arrivals through exact.replay
        want: dict[str, str | None] = {}
        concluded: list[SessionRow] = []
        opened: list[SessionRow] = []
        feeds: dict[str, list[tuple[int, Arrival]]] = {}
        for p, ts, clock, seq, message_id, source, eligible in rows:
            if eligible:
                feeds.setdefault(p, []).append((clock, Arrival(ts, seq, message_id, source)))
        for p, feed in feeds.items():
            state = self.states[p]
            end = _BEFORE_ALL if now is None else now - 1
            done = exact.replay(state, [c for c, _ in feed], [a for _, a in feed],
                                self.timeout, end)  # fmt: skip
            want.update(zip((a.message_id for _, a in feed), done.session_ids, strict=True))
            concluded += [session_row(s) for s, _ in done.concluded]
            if state.open is not None and state.open.session_id in done.session_ids:
                opened.append(session_row(state.open))

        got: dict[str, str | None] = {}
        for row, r in enumerate(rows):
            index = int(out.session[row])
            sid = None if index < 0 else str(out.sessions.session_id[index])
            assert bool(out.late[row]) == (r[6] and want[r[4]] is None), r
            if r[6]:
                got[r[4]] = sid
            else:
                assert sid is None
            self.marks[r[4]] = (sid, bool(out.late[row]))
        assert got == want
        assert table_rows(out.sessions, self.table, True) == sorted(concluded)
        assert table_rows(out.sessions, self.table, False) == sorted(opened)
        assert sorted(out.codes.tolist()) == sorted(self.code[p] for p in feeds)
        self.table.put(out.codes, out.after)
        self.check_states()
        self.concluded += table_rows(out.sessions, self.table, True)
        self.slow += len(out.exact)
        slow = set(out.exact.tolist())
        self.fast_late += sum(
            1 for row in np.flatnonzero(out.late).tolist() if int(batch.code[row]) not in slow
        )
        return out

    def timer(self, now: int) -> None:
        due = vector.conclude_due(self.table, now, self.timeout)
        want = []
        for state in self.states.values():
            s = exact.conclude_due(state, now, self.timeout)
            if s is not None:
                want.append(session_row(s))
        assert table_rows(due.sessions, self.table, True) == sorted(want)
        assert not due.sessions.concluded.size or due.sessions.concluded.all()
        self.table.put(due.codes, due.after)
        self.check_states()
        self.concluded += table_rows(due.sessions, self.table, True)

    def check_states(self) -> None:
        for p, state in self.states.items():
            assert state_row(self.table.state(self.code[p])) == state_row(state), p


# -- property tests ------------------------------------------------------------------


@st.composite
def many_profiles(draw: st.DrawFn, arrivals: Any = None, *, interleave: bool = True) -> list[Event]:
    """Up to 4 independent draws of test_properties' arrivals (1-3 profiles each),
    relabelled apart and merged, keeping each one's order: in a random interleaving,
    or (interleave False) by receive time, so that R5's clock reads each event's own."""
    parts = draw(st.lists(arrivals if arrivals is not None else any_order(), min_size=1,
                          max_size=4))  # fmt: skip
    labelled = [
        [Event(f"{j}/{e.message_id}", f"{j}/{e.profile_id}", e.ts, e.received_at, e.kind)
         for e in part]
        for j, part in enumerate(parts)
    ]  # fmt: skip
    if not interleave:
        return sorted(itertools.chain(*labelled), key=lambda e: (e.received_at, e.ts))
    picks = draw(st.permutations([j for j, part in enumerate(labelled) for _ in part]))
    cursors = [iter(part) for part in labelled]
    return [next(cursors[j]) for j in picks]


def rows_of(events: list[Event]) -> list[tuple[str, int, int, int, str, str, bool]]:
    """R5's clock, as test_properties.replayed has it: the running max of received_at."""
    clocks = itertools.accumulate((e.received_at for e in events), max)
    return [
        (e.profile_id, min(e.ts, e.received_at), clock, seq, e.message_id, e.source, e.eligible)
        for seq, (clock, e) in enumerate(zip(clocks, events, strict=True))
    ]


def run_in_batches(events: list[Event], data: st.DataObject) -> Twin:
    """Cut the arrivals into batches at instant boundaries, with timer calls (at or
    before the next batch's first instant) and `now` in between; end with a timer after
    everything, and check the whole run against one replay of all the events."""
    rows = rows_of(events)
    twin = Twin(sorted({e.profile_id for e in events}))
    bounds = [i for i in range(1, len(rows)) if rows[i][2] != rows[i - 1][2]]
    cuts = sorted(data.draw(st.sets(st.sampled_from(bounds)) if bounds else st.just(set())))
    for lo, hi in itertools.pairwise([0, *cuts, len(rows)]):
        part = rows[lo:hi]
        nxt = rows[hi][2] if hi < len(rows) else END
        now = data.draw(st.one_of(st.none(), st.integers(part[-1][2], nxt)))
        twin.batch(part, now)
        if data.draw(st.booleans()):
            twin.timer(data.draw(st.integers(part[-1][2], nxt)))
    twin.timer(END + 1)
    mine = [session_record(Session(i, p, f, la, n, src), True)
            for p, i, f, la, n, src in twin.concluded]  # fmt: skip
    assert (sorted_sessions(mine), twin.marks) == replayed(events)
    event("profiles to exact: " + ("none" if not twin.slow else "some"))
    event("late events: " + ("none" if not any(v[1] for v in twin.marks.values()) else "some"))
    event("late events found on the fast path: " + ("none" if not twin.fast_late else "some"))
    return twin


@settings(max_examples=300, deadline=None)
@given(many_profiles(), st.data())
def test_vector_equals_exact_replay_in_any_order(events: list[Event], data: st.DataObject) -> None:
    run_in_batches(events, data)


@settings(max_examples=150, deadline=None)
@given(many_profiles(in_order(), interleave=False), st.data())
def test_in_order_arrivals_never_leave_the_fast_path(
    events: list[Event], data: st.DataObject
) -> None:
    twin = run_in_batches(events, data)
    assert twin.slow == 0
    assert not any(late for _, late in twin.marks.values())


# -- targeted cases ------------------------------------------------------------------

P, Q = "u1", "u2"


def sid(message_id: str, profile: str = P) -> str:
    return session_id_for(profile, message_id)


def rows(*items: tuple[str, int, int], start: int = 0) -> list[tuple[str, int, int, int, str,
                                                                     str, bool]]:  # fmt: skip
    """(profile, ts, clock) -> rows with seq and message ids m<seq>, all eligible."""
    return [(p, ts, c, i, f"m{i}", "web", True) for i, (p, ts, c) in enumerate(items, start)]


def ids(twin: Twin, out: vector.Step) -> list[str | None]:
    return [None if i < 0 else str(out.sessions.session_id[i]) for i in out.session.tolist()]


def test_regular_profiles_are_cut_at_the_timeout_without_the_exact_engine() -> None:
    twin = Twin([P, Q])
    out = twin.batch(rows((P, 0, 0), (Q, 5, 5), (P, T - 1, T - 1), (Q, T + 5, T + 5),
                          (P, 2 * T - 1, 2 * T - 1)))  # fmt: skip
    assert ids(twin, out) == [sid("m0"), sid("m1", Q), sid("m0"), sid("m3", Q), sid("m4")]
    assert len(out.exact) == 0
    assert out.sessions.concluded.sum() == 2  # P's first, Q's first


def test_ties_take_the_id_of_the_earlier_arrival() -> None:
    twin = Twin([P])
    out = twin.batch(rows((P, 7, 10), (P, 7, 10), (P, 5, 10)))
    assert ids(twin, out) == [sid("m2")] * 3
    out = twin.batch(rows((P, 3 * T, 3 * T), (P, 3 * T, 3 * T), start=3))
    assert ids(twin, out) == [sid("m3")] * 2
    assert len(out.exact) == 0


def test_an_instant_out_of_time_order_stays_on_the_fast_path() -> None:
    twin = Twin([P])
    out = twin.batch(rows((P, 2 * T - 2, 3 * T), (P, 0, 3 * T), (P, T - 1, 3 * T)))
    assert ids(twin, out) == [sid("m1"), sid("m1"), sid("m1")]
    assert len(out.exact) == 0


def test_event_arriving_after_its_session_fell_due_is_late_on_the_fast_path() -> None:
    # [0] falls due at T, before the instant T + 1: it is concluded, the horizon is T.
    # T - 1 would have joined it: late. T + 5 (same instant) is after the horizon: a new
    # session, although it is within the timeout of the late one.
    twin = Twin([P])
    out = twin.batch(rows((P, 0, 0), (P, T - 1, T + 1), (P, T + 5, T + 1)))
    assert ids(twin, out) == [sid("m0"), None, sid("m2")]
    assert out.late.tolist() == [False, True, False]
    assert len(out.exact) == 0


def test_open_session_from_an_earlier_batch_falls_due_before_the_first_instant() -> None:
    twin = Twin([P])
    twin.batch(rows((P, 0, 0), (P, 10, 10)))
    # [0, 10] fell due at T + 10, before T + 11: T + 5 and T + 8 are late, T + 20 is not
    out = twin.batch(rows((P, T + 5, T + 11), (P, T + 20, T + 11), (P, T + 8, T + 11),
                          start=2))  # fmt: skip
    assert ids(twin, out) == [None, sid("m3"), None]
    assert len(out.exact) == 0
    assert table_rows(out.sessions, twin.table, True) == [(P, sid("m0"), 0, 10, 2, "web")]


def test_arrival_exactly_at_the_due_instant_still_joins() -> None:
    twin = Twin([P])
    out = twin.batch(rows((P, 0, 0), (P, T - 1, T)))
    assert ids(twin, out) == [sid("m0"), sid("m0")]


def test_late_event_followed_by_an_event_chained_to_it_goes_to_the_exact_engine() -> None:
    # [0] falls due at T; T - 1 arrives at T + 1 (late); 2T - 2 arrives at 3T: within the
    # timeout of the late event, but after the horizon T, so a new session
    twin = Twin([P])
    out = twin.batch(rows((P, 0, 0), (P, T - 1, T + 1), (P, 2 * T - 2, 3 * T)))
    assert ids(twin, out) == [sid("m0"), None, sid("m2")]
    assert out.exact.tolist() == [0]


def test_event_older_than_the_open_sessions_last_is_taken_set_wise_when_fresh() -> None:
    # fresh: within the timeout of the batch's last instant, so nothing can fall due
    twin = Twin([P])
    twin.batch(rows((P, 1000, 1000)))
    out = twin.batch(rows((P, 500, 1200), start=1))
    assert ids(twin, out) == [sid("m0")]
    assert out.exact.tolist() == []
    assert twin.table.open_first[0] == 500
    assert int(out.sessions.head[0]) == -1  # it was open before the batch


def test_event_older_than_the_open_sessions_last_goes_to_the_exact_engine() -> None:
    # not fresh: the open session's last event is a timeout before the batch's instant
    twin = Twin([P])
    twin.batch(rows((P, 1000, 1000)))
    out = twin.batch(rows((P, 500, T + 1000), start=1))
    assert ids(twin, out) == [sid("m0")]
    assert out.exact.tolist() == [0]
    assert twin.table.open_first[0] == 500


def test_event_older_than_an_earlier_instant_is_taken_set_wise_when_fresh() -> None:
    twin = Twin([P, Q])
    out = twin.batch(rows((Q, 0, 0), (P, 1000, 1000), (P, 500, 1200), (P, 400, 1200)))
    # a new session's id comes from the first event of the profile's first instant
    assert ids(twin, out) == [sid("m0", Q), sid("m1"), sid("m1"), sid("m1")]
    assert out.exact.tolist() == []
    assert twin.table.open_first[0] == 400 and twin.table.open_events[0] == 3


def test_runs_arriving_whole_one_after_another_stay_set_wise_out_of_order() -> None:
    twin = Twin([P])
    out = twin.batch(rows((P, 1000, 2000), (P, 500, 2500), (P, 200_000, 200_500),
                          (P, 150_000, 201_000)))  # fmt: skip
    # each run is headed by its first instant's earliest event, not its earliest event
    assert ids(twin, out) == [sid("m0"), sid("m0"), sid("m2"), sid("m2")]
    assert out.exact.tolist() == []
    assert twin.table.open_first[0] == 150_000 and twin.table.horizon[0] == 1000 + T


def test_a_run_arriving_after_the_next_began_goes_to_the_exact_engine() -> None:
    twin = Twin([P])
    out = twin.batch(rows((P, 1000, 2000), (P, 200_000, 200_500), (P, 500, 201_000)))
    assert ids(twin, out) == [sid("m0"), sid("m1"), None]  # late: its run was concluded
    assert out.exact.tolist() == [0]


def test_an_event_chained_only_through_a_later_one_goes_to_the_exact_engine() -> None:
    twin = Twin([P])
    out = twin.batch(rows((P, 100_000, 100_000), (P, 0, 100_001), (P, 50_000, 100_002)))
    # R2 makes one run of the three, but the second arrived apart from the first: a
    # session of its own, concluded at once, which the third then joins (late)
    assert out.exact.tolist() == [0]
    assert ids(twin, out)[2] is None


def test_event_older_than_an_earlier_instant_goes_to_the_exact_engine() -> None:
    twin = Twin([P, Q])
    out = twin.batch(rows((Q, 0, 0), (P, 1000, 1000), (P, 500, T + 1200)))
    # P's session fell due before the later instant: the older event is late
    assert ids(twin, out) == [sid("m0", Q), sid("m1"), None]
    assert out.exact.tolist() == [0]  # only P


def test_event_older_than_the_horizon_needs_the_history() -> None:
    twin = Twin([P])
    twin.batch(rows((P, 0, 0), (P, 10, 10)), now=T + 11)  # [0, 10] concluded, horizon T+10
    assert twin.table.horizon[0] == T + 10
    late = rows((P, 5, 2 * T), start=2)
    with pytest.raises(ValueError, match="history"):
        twin.batch(late, with_history=False)
    twin.states[P].history = [(0, 10)]  # (the failed call left the reference as it was)
    twin.states[P].open = None
    out = twin.batch(late)
    assert ids(twin, out) == [None]
    assert out.late.tolist() == [True]


def test_old_event_touching_nothing_is_its_own_session_concluded_at_once() -> None:
    twin = Twin([P])
    twin.batch(rows((P, 0, 0), (P, 10 * T, 10 * T)), now=11 * T - 1)
    out = twin.batch(rows((P, 5 * T, 11 * T - 1), start=2))
    assert ids(twin, out) == [sid("m2")]
    assert table_rows(out.sessions, twin.table, True) == [(P, sid("m2"), 5 * T, 5 * T, 1,
                                                            "web")]  # fmt: skip
    assert twin.table.open_id[0] == sid("m1")


def test_now_concludes_the_sessions_due_before_it() -> None:
    twin = Twin([P, Q])
    out = twin.batch(rows((P, 0, 0), (Q, 1, 1)), now=T + 1)
    assert table_rows(out.sessions, twin.table, True) == [(P, sid("m0"), 0, 0, 1, "web")]
    assert twin.table.open_last.tolist() == [NONE, 1]
    assert twin.table.horizon.tolist() == [T, NONE]
    assert twin.table.latest_id.tolist() == [sid("m0"), None]


def test_timer_concludes_strictly_before_now() -> None:
    twin = Twin([P, Q])
    twin.batch(rows((P, 0, 0), (Q, 1, 1)))
    twin.timer(T + 1)  # P: due at T < T + 1; Q: due at T + 1, not yet
    assert twin.table.open_last.tolist() == [NONE, 1]
    twin.timer(T + 2)
    assert twin.table.open_last.tolist() == [NONE, NONE]
    assert twin.table.horizon.tolist() == [T, T + 1]


def test_timer_on_some_codes_only() -> None:
    table = vector.Profiles.new([P, Q])
    table.open_last[:] = 0
    table.open_first[:] = 0
    table.open_id[:] = ["a", "b"]
    table.open_source[:] = "web"
    due = vector.conclude_due(table, T + 1, T, codes=np.array([1], dtype=np.int64))
    assert due.codes.tolist() == [1] and due.sessions.session_id.tolist() == ["b"]


def test_ineligible_rows_get_no_session_and_touch_no_state() -> None:
    twin = Twin([P, Q])
    batch = rows((P, 0, 0), (Q, 1, 1), (P, 2, 2))
    batch[1] = (*batch[1][:6], False)
    out = twin.batch(batch)
    assert ids(twin, out) == [sid("m0"), None, sid("m0")]
    assert out.late.tolist() == [False, False, False]
    assert out.codes.tolist() == [0]


def test_empty_batch() -> None:
    twin = Twin([P])
    out = twin.batch([])
    assert len(out.sessions) == 0 and len(out.codes) == 0


def test_rows_out_of_arrival_order_are_refused() -> None:
    table = vector.Profiles.new([P])
    one = np.zeros(2, dtype=np.int64)
    names = np.array(["a", "b"], dtype=object)
    with pytest.raises(ValueError, match="clock"):
        vector.step(table, vector.Batch(one, one, np.array([1, 0]), np.array([0, 1]),
                                        names, names), T)  # fmt: skip
    with pytest.raises(ValueError, match="seq"):
        vector.step(table, vector.Batch(one, one, one, np.array([1, 1]), names, names), T)


def test_profiles_table_round_trips_profile_states() -> None:
    state = ProfileState(P, open=Session("s", P, 1, 2, 3, "ios"), horizon=9, latest=(0, "r"))
    table = vector.Profiles.from_states([ProfileState(Q), state])
    assert state_row(table.state(1)) == state_row(state)
    assert state_row(table.state(0)) == state_row(ProfileState(Q))
    both = table.concat(vector.Profiles.new(["u3"]))
    assert len(both) == 3 and both.profile_id.tolist() == [Q, P, "u3"]


@st.composite
def live_traffic(draw: st.DrawFn) -> list[list[tuple[str, int, int, int, str, str, bool]]]:
    """Batches as a busy server sees them: arrival instants a few ms apart, each event
    timed a little before its arrival (clients' clocks and queues), so a profile's events
    often arrive out of time order; now and then an old event (offline, retried)."""
    profiles = [f"p{i}" for i in range(draw(st.integers(1, 4)))]
    clock, seq = 10 * T, 0
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        batch = []
        for _ in range(draw(st.integers(1, 12))):
            clock += draw(st.integers(0, 40))
            old = draw(st.integers(0, 9)) == 0
            delay = draw(st.integers(0, 3 * T)) if old else draw(st.integers(0, 200))
            p = draw(st.sampled_from(profiles))
            source = draw(st.sampled_from(["web", "ios"]))
            batch.append((p, clock - delay, clock, seq, f"m{seq}", source, True))
            seq += 1
        batches.append(batch)
        clock += draw(st.integers(0, 2 * T))
    return batches


@settings(max_examples=300, deadline=None)
@given(live_traffic())
def test_live_traffic_equals_the_exact_engine(
    batches: list[list[tuple[str, int, int, int, str, str, bool]]],
) -> None:
    profiles = sorted({r[0] for b in batches for r in b})
    twin = Twin(profiles, timeout=1000)
    for batch in batches:
        twin.batch(batch)  # asserts the vectorized engine gives exact.replay's answer


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 9)), min_size=0, max_size=60),
    scale=st.sampled_from([1, 1_000, 10**12, 2**40]),
    seed=st.integers(0, 2**32 - 1),
)
def test_order_by_code_time_seq_equals_lexsort(
    rows: list[tuple[int, int]], scale: int, seed: int
) -> None:
    """resessionize's order (a packed-key sort, ties put back in seq order; lexsort when
    code and time do not fit one int64: scale 2**40 with codes spread to 2**30) is the
    (profile, time, arrival) order of R2."""
    rng = np.random.default_rng(seed)
    code = np.array([c for c, _ in rows], dtype=np.int64)
    if scale == 2**40:
        code = code << 27
    ts = np.array([t for _, t in rows], dtype=np.int64) * scale
    seq = rng.permutation(len(rows)).astype(np.int64) * 7
    got = by_code_time_seq(code, ts, seq)
    assert np.array_equal(got, np.lexsort((seq, ts, code)))
