"""R2-R5 for one profile, one arrival instant at a time. Pure: the clock is passed in."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from lull.engine.state import Arrival, ProfileState, Session
from lull.model import session_id_for

_HISTORY, _OPEN, _NEW = 0, 0, 1


@dataclass(slots=True)
class Applied:
    """The outcome of one arrival group: a session id per arrival (None: late), and the
    sessions that the group itself closed (they ended before a later session in it)."""

    session_ids: list[str | None]
    concluded: list[Session]


def needs_history(state: ProfileState, arrivals: Sequence[Arrival]) -> bool:
    """True when an arrival is older than the horizon and the history is not loaded."""
    return (
        state.history is None
        and state.horizon is not None
        and any(a.ts < state.horizon for a in arrivals)
    )


def conclude_due(state: ProfileState, before: int, timeout: int) -> Session | None:
    """R4: conclude the open session if it fell due strictly before `before`."""
    s = state.open
    if s is None or s.last_ts + timeout >= before:
        return None
    _close(state, s, timeout)
    return s


def apply(state: ProfileState, arrivals: Sequence[Arrival], timeout: int) -> Applied:
    """Apply events that arrive at the same instant (R2, R3, R5), as one set.

    The arrivals, the open session and the concluded sessions near them are laid out on
    the time line; runs of them with gaps below `timeout` are R2's sessions. A run that
    touches a concluded session is final, so its new events are late (R5: those before
    the horizon; the others are laid out again without the late ones). A run holding the
    open session extends it (its id never changes). Any other run is a new session whose
    id comes from its first event. Every run but the latest is over: it is concluded here.
    """
    if needs_history(state, arrivals):
        raise ValueError(f"history of profile {state.profile_id!r} must be loaded first")
    if len(arrivals) == 1 and (state.horizon is None or arrivals[0].ts >= state.horizon):
        quick = _apply_one(state, arrivals[0], timeout)
        if quick is not None:
            return quick
    # blocks: (start, end, kind-order, seq, index); index -1: open session, -2: history
    blocks: list[tuple[int, int, int, int, int]] = [
        (a.ts, a.ts, _NEW, a.seq, i) for i, a in enumerate(arrivals)
    ]
    if state.open is not None:
        blocks.append((state.open.first_ts, state.open.last_ts, _OPEN, -1, -1))
    if state.history is not None and arrivals:
        lo = min(a.ts for a in arrivals) - timeout
        hi = max(a.ts for a in arrivals) + timeout
        start = max(0, bisect.bisect_left(state.history, (lo,)) - 1)
        for first, last in state.history[start:]:
            if first > hi:
                break
            blocks.append((first, last, _HISTORY, -1, -2))
    blocks.sort()
    runs = _runs(blocks, timeout)
    # R5: only an event before the horizon is late. One at or after it that is linked to
    # a concluded session only through late events of this group is laid out again
    # without them (as if they had arrived just before it).
    late = {b[4] for run in runs if any(x[4] == -2 for x in run) for b in run if b[4] >= 0}
    if state.horizon is not None and any(arrivals[i].ts >= state.horizon for i in late):
        horizon = state.horizon
        runs = _runs([b for b in blocks if b[4] not in late or b[0] >= horizon], timeout)

    ids: list[str | None] = [None] * len(arrivals)

    live: list[Session] = []
    for run in runs:
        kinds = {b[4] for b in run if b[4] < 0}
        members = [arrivals[b[4]] for b in run if b[4] >= 0]
        if -2 in kinds:
            # Late (R5): the run reaches a concluded session, which is final. Its new
            # arrivals get no session; an open session bridged by them stays as it was.
            if -1 in kinds and state.open is not None:
                live.append(state.open)
            continue
        if -1 in kinds:
            session = state.open
            assert session is not None
        else:
            head = members[0]
            session = Session(
                session_id_for(state.profile_id, head.message_id),
                state.profile_id,
                head.ts,
                head.ts,
                0,
                head.source,
            )
        for b in run:
            if b[4] >= 0:
                ids[b[4]] = session.session_id
        session.first_ts = min(session.first_ts, run[0][0])
        session.last_ts = max(session.last_ts, max(b[1] for b in run))
        session.events += len(members)
        live.append(session)

    concluded: list[Session] = []
    state.open = None
    for session in live[:-1]:
        _close(state, session, timeout)
        concluded.append(session)
    if live:
        state.open = live[-1]
    return Applied(ids, concluded)


def _runs(
    blocks: list[tuple[int, int, int, int, int]], timeout: int
) -> list[list[tuple[int, int, int, int, int]]]:
    """Cut sorted blocks into runs: a gap of at least `timeout` starts a new one (R2)."""
    runs: list[list[tuple[int, int, int, int, int]]] = []
    end = 0
    for b in blocks:
        if not runs or b[0] - end >= timeout:
            runs.append([b])
            end = b[1]
        else:
            runs[-1].append(b)
            end = max(end, b[1])
    return runs


def _apply_one(state: ProfileState, a: Arrival, timeout: int) -> Applied | None:
    """The common case, without laying out blocks: one arrival that touches nothing
    concluded joins the open session or starts the next one. None: use the general path."""
    s = state.open
    if s is not None and s.first_ts - timeout < a.ts < s.last_ts + timeout:
        s.first_ts = min(s.first_ts, a.ts)
        s.last_ts = max(s.last_ts, a.ts)
        s.events += 1
        return Applied([s.session_id], [])
    if s is not None and a.ts < s.last_ts:
        return None  # older than the open session: the general path
    new = Session(session_id_for(state.profile_id, a.message_id), state.profile_id, a.ts, a.ts,
                  1, a.source)  # fmt: skip
    concluded = []
    if s is not None:
        _close(state, s, timeout)
        concluded.append(s)
    state.open = new
    return Applied([new.session_id], concluded)


def _close(state: ProfileState, session: Session, timeout: int) -> None:
    if state.open is session:
        state.open = None
    due = session.last_ts + timeout
    state.horizon = due if state.horizon is None else max(state.horizon, due)
    if state.latest is None or session.first_ts >= state.latest[0]:
        state.latest = (session.first_ts, session.session_id)
    if state.history is not None:
        bisect.insort(state.history, (session.first_ts, session.last_ts))


@dataclass(slots=True)
class Replayed:
    """The outcome of replaying one profile's arrivals on a simulated clock."""

    session_ids: list[str | None]
    concluded: list[tuple[Session, int]]  # (session, the clock time it was concluded at)


def replay(
    state: ProfileState,
    clocks: Sequence[int],
    arrivals: Sequence[Arrival],
    timeout: int,
    end: int,
) -> Replayed:
    """Replay one profile's arrivals in clock order (R5's simulated clock).

    `clocks[i]` is when `arrivals[i]` arrived (non-decreasing). Before each instant, the
    sessions that fell due before it are concluded; after the last, those due by `end`.
    """
    ids: list[str | None] = []
    concluded: list[tuple[Session, int]] = []
    i, n = 0, len(arrivals)
    while i < n:
        clock = clocks[i]
        j = i
        while j < n and clocks[j] == clock:
            j += 1
        due = conclude_due(state, clock, timeout)
        if due is not None:
            concluded.append((due, due.last_ts + timeout))
        out = apply(state, arrivals[i:j], timeout)
        ids.extend(out.session_ids)
        concluded.extend((s, s.last_ts + timeout) for s in out.concluded)
        i = j
    due = conclude_due(state, end + 1, timeout)
    if due is not None:
        concluded.append((due, due.last_ts + timeout))
    return Replayed(ids, concluded)
