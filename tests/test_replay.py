"""`engine.replay` (the import's driver of the vectorized engine) equals `exact.replay`.

The events of test_properties.py's strategies (ties, late, out of order, several
profiles) are cut in two: the first part is replayed by the exact engine up to its last
arrival (as `lull import --keep-open` leaves a store), and its state is the table the
second part starts from, with the concluded sessions as the store's history. The second
part then runs through `replay` in batches as small as one instant (so that open
sessions cross batches) and through `exact.replay` per profile; every row must get the
same session id (R3, made from the session's head row, or the open session's id) and
late mark, and every session the same times, event count and concluded flag.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.engine import exact, vector
from lull.engine.replay import replay
from lull.engine.state import NONE, Arrival, ProfileState, Session
from lull.model import session_id_for
from test_properties import END, Event, T, any_order

Row = tuple[str, str, int, int, int, bool]  # profile, id, first, last, events, concluded


def shifted(events: list[Event], cut: int) -> tuple[list[Event], int]:
    """The second part arrives after the first: receive times moved past its last one."""
    first_end = max((e.received_at for e in events[:cut]), default=0)
    later = [
        Event(e.message_id, e.profile_id, e.ts, max(e.received_at, first_end + 1), e.kind)
        for e in events[cut:]
    ]
    return events[:cut] + later, first_end


@settings(max_examples=300, deadline=None)
@given(any_order(), st.data())
def test_replay_equals_exact_replay_from_a_stored_state(
    events: list[Event], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(events)))
    batch = data.draw(st.sampled_from([1, 2, 3, 5, 1000]))
    events, first_end = shifted(events, cut)
    clocks = list(itertools.accumulate((e.received_at for e in events), max))
    profiles = sorted({e.profile_id for e in events})
    code_of = {p: i for i, p in enumerate(profiles)}

    states, open_ids, histories = [], {}, {}
    expected_rows: dict[str, str | None] = {}
    expected_sessions: set[Row] = set()
    for profile_id in profiles:
        feed = [(c, Arrival(e.ts, seq, e.message_id, e.source))
                for seq, (c, e) in enumerate(zip(clocks, events, strict=True))
                if e.profile_id == profile_id and e.eligible]  # fmt: skip
        before = [x for x in feed if x[1].seq < cut]
        after = [x for x in feed if x[1].seq >= cut]
        state = ProfileState(profile_id, history=[])
        exact.replay(state, [c for c, _ in before], [a for _, a in before], T, first_end)
        states.append(ProfileState(profile_id, state.open and _copy(state), state.horizon))
        open_ids[profile_id] = None if state.open is None else state.open.session_id
        histories[code_of[profile_id]] = list(state.history or [])
        out = exact.replay(state, [c for c, _ in after], [a for _, a in after], T, END)
        expected_rows.update(
            (a.message_id, sid) for (_, a), sid in zip(after, out.session_ids, strict=True)
        )
        for s, _ in out.concluded:
            expected_sessions.add((profile_id, s.session_id, s.first_ts, s.last_ts, s.events, True))
        assert state.open is None  # END is after every due time

    table = vector.Profiles.from_states(states)
    mine = [(c, e) for seq, (c, e) in enumerate(zip(clocks, events, strict=True))
            if seq >= cut and e.eligible]  # fmt: skip
    got = replay(
        table,
        np.array([code_of[e.profile_id] for _, e in mine], dtype=np.int64),
        np.array([e.ts for _, e in mine], dtype=np.int64),
        np.array([c for c, _ in mine], dtype=np.int64),
        T,
        end=END,
        stored=lambda code: histories[code],
        batch=batch,
    )

    def sid(i: int) -> str:
        profile_id = profiles[int(got.code[i])]
        if got.head[i] < 0:
            known = open_ids[profile_id]
            assert known is not None
            return known
        return session_id_for(profile_id, mine[int(got.head[i])][1].message_id)

    got_rows = {
        e.message_id: (None if got.session[r] < 0 else sid(int(got.session[r])))
        for r, (_, e) in enumerate(mine)
    }
    assert got_rows == expected_rows
    assert [bool(x) for x in got.late] == [expected_rows[e.message_id] is None for _, e in mine]
    got_sessions = {
        (profiles[int(got.code[i])], sid(i), int(got.first_ts[i]), int(got.last_ts[i]),
         int(got.events[i]), bool(got.concluded[i]))
        for i in range(len(got.code))
    }  # fmt: skip
    assert got_sessions == expected_sessions
    assert bool(np.all(got.table.open_last == NONE))


def _copy(state: ProfileState) -> Session:
    o = state.open
    assert o is not None
    return Session(o.session_id, o.profile_id, o.first_ts, o.last_ts, o.events, o.source)


def test_an_open_session_carried_across_batches_is_one_session() -> None:
    # one event an instant, one instant a batch: the session goes on across four batches
    ts = 10**12 + np.array([0, T // 2, T, 3 * T // 2], dtype=np.int64)
    out = replay(vector.Profiles.new(["u"]), np.zeros(4, dtype=np.int64), ts, ts, T,
                 end=10**13, batch=1)  # fmt: skip
    assert out.session.tolist() == [0, 0, 0, 0]
    assert (out.head.tolist(), out.events.tolist(), out.concluded.tolist()) == ([0], [4], [True])
    assert (int(out.first_ts[0]), int(out.last_ts[0])) == (int(ts[0]), int(ts[-1]))


def test_a_gap_of_the_timeout_across_batches_starts_a_session() -> None:
    ts = 10**12 + np.array([0, T], dtype=np.int64)
    out = replay(vector.Profiles.new(["u"]), np.zeros(2, dtype=np.int64), ts, ts, T,
                 end=10**13, batch=1)  # fmt: skip
    assert out.session.tolist() == [0, 1]
    assert out.head.tolist() == [0, 1]


def test_a_session_due_by_the_end_is_concluded_and_one_not_yet_due_stays_open() -> None:
    ts = np.array([10**12], dtype=np.int64)
    due = replay(vector.Profiles.new(["u"]), np.zeros(1, dtype=np.int64), ts, ts, T,
                 end=10**12 + T)  # fmt: skip
    open_ = replay(vector.Profiles.new(["u"]), np.zeros(1, dtype=np.int64), ts, ts, T,
                   end=10**12 + T - 1)  # fmt: skip
    assert (due.concluded.tolist(), open_.concluded.tolist()) == ([True], [False])
    assert int(open_.table.open_last[0]) == 10**12
