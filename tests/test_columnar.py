"""The columnar engine (`lull.engine.columnar.sessionize`) on small arrays."""

from __future__ import annotations

import numpy as np

from lull.engine.columnar import NONE, Prior, Runs, sessionize

T = 60_000


def arr(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def no_prior(profiles: int) -> Prior:
    return Prior(arr([NONE] * profiles), arr([NONE] * profiles), arr([NONE] * profiles))


def open_before(first: int, last: int) -> Prior:
    """Profile 0 has an open session [first, last] from an earlier import."""
    return Prior(arr([first]), arr([last]), arr([NONE]))


def horizon_before(horizon: int) -> Prior:
    """Profile 0 has a concluded session, and no open one."""
    return Prior(arr([NONE]), arr([NONE]), arr([horizon]))


def cut(
    code: list[int], ts: list[int], clock: list[int] | None = None, prior: Prior | None = None
) -> Runs:
    """Sessionize; the clock defaults to the event times (received as they happen)."""
    return sessionize(
        arr(code),
        arr(ts),
        arr(ts if clock is None else clock),
        prior or no_prior(max(code) + 1),
        T,
    )


def run_of(r: Runs) -> list[int]:
    """Each input row's run (-1: left to the exact engine), in input order."""
    out = np.empty(len(r.order), dtype=np.int64)
    out[r.order] = r.row_run
    return [int(x) for x in out]


def slow_of(r: Runs) -> list[bool]:
    """Whether each input row is left to the exact engine, in input order."""
    out = np.empty(len(r.order), dtype=bool)
    out[r.order] = r.slow
    return [bool(x) for x in out]


def spans(r: Runs) -> list[tuple[int, int, int, int]]:
    """Per run: (profile code, first time, last time, events of this input)."""
    return [
        (int(c), int(f), int(la), int(e))
        for c, f, la, e in zip(r.code, r.first_ts, r.last_ts, r.events, strict=True)
    ]


def test_gap_of_exactly_timeout_splits() -> None:
    r = cut([0, 0], [0, T])
    assert run_of(r) == [0, 1]
    assert spans(r) == [(0, 0, 0, 1), (0, T, T, 1)]


def test_gap_one_ms_short_of_timeout_joins() -> None:
    r = cut([0, 0], [0, T - 1])
    assert run_of(r) == [0, 0]
    assert spans(r) == [(0, 0, T - 1, 2)]


def test_regular_profile_is_cut_into_r2_sessions() -> None:
    r = cut([0, 0, 0, 0, 0], [0, T - 1, 2 * T - 1, 3 * T - 2, 10 * T])
    assert run_of(r) == [0, 0, 1, 1, 2]
    assert spans(r) == [(0, 0, T - 1, 2), (0, 2 * T - 1, 3 * T - 2, 2), (0, 10 * T, 10 * T, 1)]
    assert not r.slow.any()


def test_new_runs_are_created_by_their_first_row() -> None:
    r = cut([0, 0, 0], [0, 5, T + 5])
    assert r.first_row.tolist() == [0, 2]
    assert r.new.tolist() == [True, True]


def test_all_runs_but_the_last_of_a_profile_are_closed() -> None:
    r = cut([0, 0, 0], [0, T, 2 * T])
    assert r.closed.tolist() == [True, True, False]
    assert not r.handed.any()


def test_interleaved_profiles_are_cut_apart() -> None:
    r = cut([0, 1, 0, 1, 0], [0, 1, 10, T + 1, T + 9])
    assert sorted(spans(r)) == [(0, 0, T + 9, 3), (1, 1, 1, 1), (1, T + 1, T + 1, 1)]
    runs = run_of(r)
    assert runs[0] == runs[2] == runs[4]
    assert len({runs[0], runs[1], runs[3]}) == 3


def test_out_of_order_within_one_instant_is_regular() -> None:
    r = cut([0, 0, 0], [T - 1, 0, T], clock=[T, T, T])
    assert not r.slow.any()
    assert run_of(r) == [0, 0, 0]
    assert spans(r) == [(0, 0, T, 3)]


def test_session_created_in_one_instant_takes_its_earliest_event() -> None:
    # the id comes from the first event by (time, arrival) of the instant that created it
    r = cut([0, 0, 0], [T - 1, 0, 0], clock=[T, T, T])
    assert r.first_row.tolist() == [1]


def test_tied_times_keep_arrival_order() -> None:
    r = cut([0, 0, 0], [5, 5, 5], clock=[5, 5, 5])
    assert r.order.tolist() == [0, 1, 2]
    assert r.first_row.tolist() == [0]


def test_out_of_order_event_extending_the_session_is_regular() -> None:
    # 5 arrives after 10, within the timeout of it and before it falls due: it extends
    # the session backwards, which keeps the id of the event that created it
    r = cut([0, 0], [10, 5], clock=[10, 11])
    assert not r.slow.any()
    assert spans(r) == [(0, 5, 10, 2)]
    assert r.first_row.tolist() == [0]


def test_event_joining_at_the_due_instant_is_regular() -> None:
    r = cut([0, 0], [0, T - 1], clock=[0, T])
    assert not r.slow.any()
    assert run_of(r) == [0, 0]


def test_event_joining_after_the_due_instant_is_slow() -> None:
    r = cut([0, 0], [0, T - 1], clock=[0, T + 1])
    assert slow_of(r) == [False, True]
    assert run_of(r) == [0, -1]


def test_rows_before_the_first_slow_instant_are_handed_to_the_exact_engine() -> None:
    # [0] and [T] are regular; T + 10 arrives after [T] fell due (late): slow from there
    r = cut([0, 0, 0, 0], [0, T, T + 10, 3 * T], clock=[0, T, 2 * T + 1, 3 * T])
    assert slow_of(r) == [False, False, True, True]
    assert spans(r) == [(0, 0, 0, 1), (0, T, T, 1)]
    assert r.closed.tolist() == [True, False]
    assert r.handed.tolist() == [False, True]


def test_whole_instant_is_slow_when_one_of_its_rows_is() -> None:
    r = cut([0, 0, 0], [0, T - 1, 5 * T], clock=[0, T + 1, T + 1])
    assert slow_of(r) == [False, True, True]


def test_session_pieced_together_out_of_order_is_slow() -> None:
    # 0 and 3T/2 are apart; 3T/4 arrives last and bridges them (R2: one session)
    r = cut([0, 0, 0], [0, 3 * T // 2, 3 * T // 4], clock=[0, 3 * T // 2, 3 * T // 2 + 1])
    assert slow_of(r)[2]


def test_prior_open_session_is_continued() -> None:
    r = cut([0, 0], [100 + T - 1, 2 * T + 50], prior=open_before(0, 100))
    assert run_of(r) == [0, 0]
    assert r.new.tolist() == [False]
    assert r.first_row.tolist() == [-1]
    assert spans(r) == [(0, 0, 2 * T + 50, 2)]


def test_prior_open_session_is_extended_backwards() -> None:
    r = cut([0], [150], clock=[300], prior=open_before(100, 200))
    assert not r.slow.any()
    assert r.new.tolist() == [False]
    assert spans(r) == [(0, 100, 200, 1)]


def test_prior_open_session_is_ended_by_a_gap_of_timeout() -> None:
    r = cut([0], [100 + T], prior=open_before(0, 100))
    assert r.new.tolist() == [False, True]
    assert spans(r) == [(0, 0, 100, 0), (0, 100 + T, 100 + T, 1)]
    assert r.closed.tolist() == [True, False]
    assert run_of(r) == [1]


def test_prior_open_session_of_a_profile_without_events_is_left_alone() -> None:
    prior = Prior(arr([0, 0]), arr([100, 100]), arr([NONE, NONE]))
    r = cut([1], [100 + T], prior=prior)
    assert r.code.tolist() == [1, 1]
    assert r.new.tolist() == [False, True]


def test_prior_open_session_fallen_due_and_joined_is_slow() -> None:
    r = cut([0], [200 + T - 1], clock=[200 + T + 1], prior=open_before(100, 200))
    assert r.slow.tolist() == [True]
    assert r.handed.tolist() == [True]


def test_first_event_before_horizon_is_slow() -> None:
    assert cut([0], [999], clock=[2000], prior=horizon_before(1000)).slow.tolist() == [True]


def test_first_event_at_horizon_is_regular() -> None:
    r = cut([0], [1000], clock=[2000], prior=horizon_before(1000))
    assert not r.slow.any()
    assert r.new.tolist() == [True]


def test_slow_profile_leaves_the_others_regular() -> None:
    # profile 0 joins [10] after it fell due; profile 1 is regular around it
    r = cut([1, 0, 1, 0, 1], [0, 10, T, 15, T + 1], clock=[0, 10, T, T + 11, T + 11])
    assert slow_of(r) == [False, False, False, True, False]
    runs = run_of(r)
    assert runs[0] != runs[2] == runs[4]
    assert sorted(spans(r)) == [(0, 10, 10, 1), (1, 0, 0, 1), (1, T, T + 1, 2)]


def test_prior_open_session_spanning_the_timeout_is_continued() -> None:
    # [0, T] was built by chaining (0, 1, T): its first and last times are T apart
    r = cut([0], [T], clock=[T + 1], prior=open_before(0, T))
    assert not r.slow.any()
    assert r.new.tolist() == [False]
    assert spans(r) == [(0, 0, T, 1)]


def test_prior_open_session_spanning_the_timeout_is_handed_when_slow() -> None:
    r = cut([0], [-T // 2], clock=[2 * T + 1], prior=open_before(0, T))
    assert r.slow.tolist() == [True]
    assert r.handed.tolist() == [True]
    assert spans(r) == [(0, 0, T, 0)]


def test_event_joining_a_session_closed_by_a_later_one_is_slow() -> None:
    # [0] is over once [T] has arrived at T; 0 arriving at T + 1 belongs to it (late)
    r = cut([0, 0, 0, 0, 0], [0, 0, T, T, 0], clock=[0, 0, T, T, T + 1])
    assert slow_of(r) == [False, False, False, False, True]
