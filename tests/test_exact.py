"""The exact engine (`lull.engine.exact`): pure, one profile, the clock passed in."""

from __future__ import annotations

import itertools

import pytest

from lull.engine import exact
from lull.engine.state import Arrival, ProfileState, Session
from lull.model import session_id_for

T = 60_000  # the timeout used throughout, ms
P = "u1"


def arrival(ts: int, seq: int, message_id: str | None = None) -> Arrival:
    return Arrival(ts, seq, message_id or f"m{seq}", "web")


def sid(message_id: str) -> str:
    return session_id_for(P, message_id)


def fresh() -> ProfileState:
    """A profile seen for the first time: no open session, nothing concluded (history known)."""
    return ProfileState(P, history=[])


def concluded_state(first: int, last: int, seq: int = 0) -> ProfileState:
    """A profile whose only session, [first, last], has been concluded."""
    state = fresh()
    exact.apply(state, [arrival(first, seq), arrival(last, seq + 1)], T)
    assert exact.conclude_due(state, last + T + 1, T) is not None
    return state


def as_tuple(s: Session) -> tuple[str, int, int, int]:
    return (s.session_id, s.first_ts, s.last_ts, s.events)


def test_gap_of_exactly_timeout_splits() -> None:
    out = exact.apply(fresh(), [arrival(0, 0), arrival(T, 1)], T)
    assert out.session_ids == [sid("m0"), sid("m1")]


def test_gap_one_ms_short_of_timeout_joins() -> None:
    out = exact.apply(fresh(), [arrival(0, 0), arrival(T - 1, 1)], T)
    assert out.session_ids == [sid("m0"), sid("m0")]


def test_gap_of_exactly_timeout_splits_across_instants() -> None:
    state = fresh()
    replayed = exact.replay(state, [0, T], [arrival(0, 0), arrival(T, 1)], T, end=T)
    assert replayed.session_ids == [sid("m0"), sid("m1")]
    assert [(as_tuple(s), at) for s, at in replayed.concluded] == [((sid("m0"), 0, 0, 1), T)]


def test_group_closes_every_session_but_the_latest() -> None:
    state = fresh()
    out = exact.apply(state, [arrival(0, 0), arrival(T, 1), arrival(3 * T, 2)], T)
    assert [as_tuple(s) for s in out.concluded] == [(sid("m0"), 0, 0, 1), (sid("m1"), T, T, 1)]
    assert state.open is not None and as_tuple(state.open) == (sid("m2"), 3 * T, 3 * T, 1)
    assert state.horizon == 2 * T


def test_arrivals_of_one_instant_shuffled_give_r2() -> None:
    # R2 over (ts, seq): [0, 10, T-1] | [2T-1 (m3), 2T-1 (m4)] | [4T]
    arrivals = [
        arrival(0, 0),
        arrival(10, 1),
        arrival(T - 1, 2),
        arrival(2 * T - 1, 3),
        arrival(2 * T - 1, 4),
        arrival(4 * T, 5),
    ]
    expected = {"m0": "m0", "m1": "m0", "m2": "m0", "m3": "m3", "m4": "m3", "m5": "m5"}
    for shuffled in itertools.permutations(arrivals):
        state = fresh()
        out = exact.apply(state, shuffled, T)
        got = dict(zip((a.message_id for a in shuffled), out.session_ids, strict=True))
        assert got == {m: sid(first) for m, first in expected.items()}
        assert [as_tuple(s) for s in out.concluded] == [
            (sid("m0"), 0, T - 1, 3),
            (sid("m3"), 2 * T - 1, 2 * T - 1, 2),
        ]
        assert state.open is not None and as_tuple(state.open) == (sid("m5"), 4 * T, 4 * T, 1)


def test_tied_first_events_take_the_id_of_the_earlier_arrival() -> None:
    out = exact.apply(fresh(), [arrival(5, 9, "late-seq"), arrival(5, 2, "early-seq")], T)
    assert out.session_ids == [sid("early-seq"), sid("early-seq")]


def test_out_of_order_event_extends_open_session_backwards_and_keeps_id() -> None:
    state = fresh()
    exact.apply(state, [arrival(1000, 0)], T)
    out = exact.apply(state, [arrival(500, 1)], T)
    assert out.session_ids == [sid("m0")]
    assert out.concluded == []
    assert state.open is not None and as_tuple(state.open) == (sid("m0"), 500, 1000, 2)


def test_session_closed_by_its_group_is_final() -> None:
    # 0 and T split; 20_000 arriving later bridges them into one R2 session. The first
    # session was closed by the group (a later one showed it was over), so it is final.
    state = fresh()
    first = exact.apply(state, [arrival(0, 0), arrival(T, 1)], T)
    assert [s.session_id for s in first.concluded] == [sid("m0")]
    out = exact.apply(state, [arrival(20_000, 2)], T)
    assert out.session_ids == [None]


def test_conclusion_moves_horizon_to_last_event_plus_timeout() -> None:
    state = fresh()
    exact.apply(state, [arrival(0, 0), arrival(T - 1, 1)], T)
    assert state.horizon is None
    done = exact.conclude_due(state, 2 * T, T)
    assert done is not None and as_tuple(done) == (sid("m0"), 0, T - 1, 2)
    assert state.open is None
    assert state.horizon == 2 * T - 1
    assert state.history == [(0, T - 1)]


def test_late_event_after_its_session_concluded_gets_none() -> None:
    state = concluded_state(0, 1000)
    out = exact.apply(state, [arrival(500, 7)], T)
    assert out.session_ids == [None]
    assert out.concluded == []
    assert state.open is None
    assert state.horizon == 1000 + T
    assert state.history == [(0, 1000)]


@pytest.mark.parametrize("ts", [-T + 1, 1000 + T - 1])
def test_event_within_timeout_of_concluded_session_is_late(ts: int) -> None:
    state = concluded_state(0, 1000)
    assert exact.apply(state, [arrival(ts, 7)], T).session_ids == [None]


def test_event_at_horizon_starts_a_new_session() -> None:
    state = concluded_state(0, 1000)
    out = exact.apply(state, [arrival(1000 + T, 7)], T)
    assert out.session_ids == [sid("m7")]
    assert state.open is not None and state.open.session_id == sid("m7")


def test_old_events_chained_to_a_concluded_session_are_late() -> None:
    # -T - 10 touches nothing itself, but -20 (which touches [0, 1000]) links it
    state = concluded_state(0, 1000)
    out = exact.apply(state, [arrival(-T + 10, 7), arrival(-20, 8)], T)
    assert out.session_ids == [None, None]
    assert state.open is None


def test_event_at_or_after_horizon_is_never_late() -> None:
    # R5: late needs a time before the horizon (1000 + T). 2T + 998 is linked to the
    # concluded session only through the late 1000 + T - 1 of the same instant.
    state = concluded_state(0, 1000)
    out = exact.apply(state, [arrival(1000 + T - 1, 7), arrival(2 * T + 998, 8)], T)
    assert out.session_ids == [None, sid("m8")]
    assert state.open is not None and as_tuple(state.open) == (
        sid("m8"),
        2 * T + 998,
        2 * T + 998,
        1,
    )


def test_event_after_horizon_joins_open_session_despite_a_late_link() -> None:
    # concluded [0, 1000], open [2T]; T + 500 is late and links both; T + 1500 joins
    # the open session (R5: it is after the horizon, so not late)
    state = fresh()
    exact.replay(
        state,
        [1000, 1000, 2 * T],
        [arrival(0, 0), arrival(1000, 1), arrival(2 * T, 2)],
        T,
        end=2 * T,
    )
    assert state.horizon == 1000 + T and state.open is not None
    out = exact.apply(state, [arrival(T + 500, 3), arrival(T + 1500, 4)], T)
    assert out.session_ids == [None, sid("m2")]
    assert as_tuple(state.open) == (sid("m2"), T + 1500, 2 * T, 2)


def test_same_events_give_same_outcome_in_one_instant_or_one_by_one() -> None:
    together = concluded_state(0, 1000)
    apart = concluded_state(0, 1000)
    batch = [arrival(1000 + T - 1, 7), arrival(2 * T + 998, 8)]
    ids_together = exact.apply(together, batch, T).session_ids
    ids_apart = [exact.apply(apart, [a], T).session_ids[0] for a in batch]
    assert ids_together == ids_apart
    assert together.open is not None and apart.open is not None
    assert as_tuple(together.open) == as_tuple(apart.open)


def test_old_event_touching_no_concluded_session_forms_its_own_session() -> None:
    # concluded [0] and [10T]; the horizon is 11T; 5T is older but touches neither
    state = fresh()
    exact.replay(state, [0, 10 * T], [arrival(0, 0), arrival(10 * T, 1)], T, end=12 * T)
    assert state.horizon == 11 * T
    out = exact.apply(state, [arrival(5 * T, 2)], T)
    assert out.session_ids == [sid("m2")]


def test_old_session_is_concluded_at_once_before_the_open_one() -> None:
    state = fresh()
    exact.replay(state, [0, 10 * T], [arrival(0, 0), arrival(10 * T, 1)], T, end=11 * T - 1)
    assert state.open is not None and state.open.session_id == sid("m1")
    out = exact.apply(state, [arrival(5 * T, 2)], T)
    assert [as_tuple(s) for s in out.concluded] == [(sid("m2"), 5 * T, 5 * T, 1)]
    assert state.open is not None and state.open.session_id == sid("m1")
    assert (5 * T, 5 * T) in (state.history or [])


def test_old_session_without_open_one_is_due_at_once() -> None:
    state = fresh()
    exact.replay(state, [0, 10 * T], [arrival(0, 0), arrival(10 * T, 1)], T, end=12 * T)
    exact.apply(state, [arrival(5 * T, 2)], T)
    done = exact.conclude_due(state, 12 * T, T)
    assert done is not None and as_tuple(done) == (sid("m2"), 5 * T, 5 * T, 1)
    assert state.horizon == 11 * T  # an older session does not move the horizon back


def test_apply_refuses_old_event_without_history() -> None:
    state = ProfileState(P, horizon=T)
    with pytest.raises(ValueError, match="history"):
        exact.apply(state, [arrival(0, 0)], T)


def test_needs_history_only_for_events_older_than_horizon() -> None:
    state = ProfileState(P, horizon=T)
    assert exact.needs_history(state, [arrival(T - 1, 0)])
    assert not exact.needs_history(state, [arrival(T, 0)])
    assert not exact.needs_history(fresh(), [arrival(0, 0)])


def test_conclude_due_spares_session_due_exactly_at_the_instant() -> None:
    state = fresh()
    exact.apply(state, [arrival(0, 0)], T)
    assert exact.conclude_due(state, T, T) is None
    assert state.open is not None


def test_conclude_due_concludes_session_due_one_ms_before_the_instant() -> None:
    state = fresh()
    exact.apply(state, [arrival(0, 0)], T)
    done = exact.conclude_due(state, T + 1, T)
    assert done is not None and done.session_id == sid("m0")
    assert state.open is None


def test_event_arriving_at_the_due_instant_joins() -> None:
    replayed = exact.replay(fresh(), [0, T], [arrival(0, 0), arrival(T - 1, 1)], T, end=T)
    assert replayed.session_ids == [sid("m0"), sid("m0")]
    assert replayed.concluded == []


def test_event_arriving_one_ms_after_the_due_instant_is_late() -> None:
    state = fresh()
    replayed = exact.replay(state, [0, T + 1], [arrival(0, 0), arrival(T - 1, 1)], T, end=T + 1)
    assert replayed.session_ids == [sid("m0"), None]
    assert [(as_tuple(s), at) for s, at in replayed.concluded] == [((sid("m0"), 0, 0, 1), T)]


def test_bridging_late_event_leaves_the_open_session_unchanged() -> None:
    # concluded [0]; open [T + 10]; T/2 + 5 is within the timeout of both
    state = fresh()
    exact.replay(state, [0, T + 10], [arrival(0, 0), arrival(T + 10, 1)], T, end=T + 10)
    assert state.open is not None and state.horizon == T
    before = as_tuple(state.open)
    out = exact.apply(state, [arrival(T // 2 + 5, 2)], T)
    assert out.session_ids == [None]
    assert out.concluded == []
    assert state.open is not None and as_tuple(state.open) == before
    assert state.horizon == T


def test_replay_end_concludes_sessions_due_at_end() -> None:
    state = fresh()
    replayed = exact.replay(state, [0], [arrival(0, 0)], T, end=T)
    assert [(as_tuple(s), at) for s, at in replayed.concluded] == [((sid("m0"), 0, 0, 1), T)]
    assert state.open is None


def test_replay_end_spares_sessions_due_after_end() -> None:
    state = fresh()
    replayed = exact.replay(state, [0], [arrival(0, 0)], T, end=T - 1)
    assert replayed.concluded == []
    assert state.open is not None and state.open.session_id == sid("m0")


def test_latest_session_is_the_one_that_started_last() -> None:
    state = fresh()
    exact.replay(state, [0, 10 * T], [arrival(0, 0), arrival(10 * T, 1)], T, end=12 * T)
    exact.apply(state, [arrival(5 * T, 2)], T)
    assert state.latest == (10 * T, sid("m1"))
