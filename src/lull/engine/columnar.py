"""R2-R5 over a whole import at once, with NumPy.

The live replay of an import equals R2 over the events (with the profile's open session)
for every session whose events, taken in arrival order, always extend one chain (each
within the timeout of those before it) and arrive before that chain fell due. So:
find R2's sessions (sort by profile and time, cut at gaps of at least the timeout),
check each event against the events of its session that arrived before it, and leave
a profile to the exact engine (`exact.replay`) from the first instant that fails the
check: late events, or a session pieced together out of order. The profile's sessions
before that instant are the exact engine's starting state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lull.engine.order import by_profile_and_time, group_by_code

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
NONE = np.iinfo(np.int64).min  # "no value" in the int64 state arrays
_FAR = np.iinfo(np.int64).max // 4


@dataclass(slots=True)
class Prior:
    """Per profile code, what the store remembers: the open session and the horizon."""

    open_first: I64
    open_last: I64
    horizon: I64


@dataclass(slots=True)
class Runs:
    """The sessions found set-wise, and the rows left to the exact engine.

    `order` is the input rows (events) in arrival order grouped by profile: by (profile,
    clock, time, input position). Along it, `slow` marks rows for the exact engine and
    `row_run` gives the other rows their run (session). Per run: its profile `code`,
    `first_row` (the input row that created it; -1 for the profile's open session from
    before), times, `events` (rows of this input), `new` (False: it continues the open
    session), `closed` (a later run of the profile shows it is over) and `handed` (the
    profile's last run, from which its slow rows go on).
    """

    order: I64
    slow: BOOL
    row_run: I64
    code: I64
    first_row: I64
    first_ts: I64
    last_ts: I64
    events: I64
    new: BOOL
    closed: BOOL
    handed: BOOL


def sessionize(code: I64, ts: I64, clock: I64, prior: Prior, timeout: int) -> Runs:
    """Inputs are in arrival order (`clock` never decreases)."""
    n = len(code)
    n_codes = len(prior.horizon)
    present = np.zeros(n_codes, dtype=bool)
    present[code] = True
    carried = np.flatnonzero(present & (prior.open_last != NONE))
    v = len(carried)
    # The open session from before enters as two rows (its first and last time) that
    # arrived before everything else.
    a_code = np.concatenate([carried, carried, code])
    a_ts = np.concatenate([prior.open_first[carried], prior.open_last[carried], ts])
    a_clock = np.concatenate([np.full(2 * v, NONE, dtype=np.int64), clock])
    total = n + 2 * v

    arrival = by_profile_and_time(a_code, a_ts, a_clock)
    r2 = by_profile_and_time(a_code, a_ts)
    carried_first = np.zeros(total, dtype=bool)
    carried_first[:v] = True
    session = np.empty(total, dtype=np.int64)
    cut = _cuts(a_code[r2], a_ts[r2], carried_first[r2], prior.open_last, timeout)
    session[r2] = cut.cumsum() - 1

    valid = _valid(arrival, session, a_ts, a_clock, timeout)
    del session, cut
    horizon = prior.horizon[a_code]
    valid &= (horizon == NONE) | (a_ts >= horizon)
    # the open session's rows are the state the import starts from, not events to check
    # (its first and last times may lie a timeout or more apart)
    valid[: 2 * v] = True
    # a profile is exact from the first instant holding an invalid row
    first_bad = np.full(n_codes, _FAR, dtype=np.int64)
    bad = np.flatnonzero(~valid)
    np.minimum.at(first_bad, a_code[bad], a_clock[bad])
    slow_row = a_clock >= first_bad[a_code]

    # R2 again over the rows before that instant: the runs
    fast_r2 = r2[~slow_row[r2]]
    f_code, f_ts = a_code[fast_r2], a_ts[fast_r2]
    cut = _cuts(f_code, f_ts, carried_first[fast_r2], prior.open_last, timeout)
    starts = np.flatnonzero(cut)
    ends = np.append(starts[1:], len(fast_r2))[: len(starts)] - 1
    run_of = np.full(total, -1, dtype=np.int64)
    run_of[fast_r2] = cut.cumsum() - 1
    rank = np.empty(total, dtype=np.int64)
    rank[arrival] = np.arange(total)
    creator = (
        arrival[np.minimum.reduceat(rank[fast_r2], starts)]
        if len(starts)
        else np.zeros(0, np.int64)
    )
    is_virtual = np.arange(total) < 2 * v
    real = (~is_virtual[fast_r2]).astype(np.int64)
    events = np.add.reduceat(real, starts) if len(starts) else np.zeros(0, np.int64)
    carries = (
        np.add.reduceat(is_virtual[fast_r2].astype(np.int64), starts) > 0
        if len(starts)
        else np.zeros(0, bool)
    )
    run_code = f_code[starts]
    last = np.ones(len(starts), dtype=bool)
    last[:-1] = run_code[1:] != run_code[:-1]

    real_arrival = arrival[~is_virtual[arrival]]
    return Runs(
        order=real_arrival - 2 * v,
        slow=slow_row[real_arrival],
        row_run=run_of[real_arrival],
        code=run_code,
        first_row=np.where(carries, -1, creator - 2 * v),
        first_ts=f_ts[starts],
        last_ts=f_ts[ends],
        events=events,
        new=~carries,
        closed=~last,
        handed=last & (first_bad[run_code] < _FAR),
    )


def _cuts(code: I64, ts: I64, carried_first: BOOL, open_last: I64, timeout: int) -> BOOL:
    """Along rows sorted by (profile, time): where a new R2 session starts.

    A profile's open session from before enters as rows at its first and last times;
    rows after its first row are measured from its last time at least, so that one
    session is never cut in two.
    """
    cut = np.ones(len(code), dtype=bool)
    if len(code) < 2:
        return cut
    start = np.ones(len(code), dtype=bool)
    start[1:] = code[1:] != code[:-1]
    seen = np.cumsum(carried_first)
    at_start = np.maximum.accumulate(np.where(start, np.arange(len(code)), 0))
    after_first = (seen - seen[at_start] + carried_first[at_start]) > 0
    far = np.where(after_first, np.maximum(ts, open_last[code]), ts)
    cut[1:] = start[1:] | (ts[1:] - far[:-1] >= timeout)
    return cut


def _valid(arrival: I64, session: I64, ts: I64, clock: I64, timeout: int) -> BOOL:
    """Per row: did it, in arrival order, extend its session's chain before it fell due?"""
    total = len(arrival)
    valid = np.ones(total, dtype=bool)
    if total == 0:
        return valid
    # the rows of each session in arrival order (sessions interleave only when events
    # arrive out of order, so the regrouping is cheap)
    by_session = session[arrival]
    steps_back = np.flatnonzero(by_session[1:] < by_session[:-1])
    q = arrival.copy()
    if len(steps_back):
        # regroup only the profiles where it happens (their rows are contiguous)
        lo_pos, hi_pos = int(steps_back[0]), int(steps_back[-1]) + 2
        part = by_session[lo_pos:hi_pos]
        # widen to every row of the sessions in it (before the first step back and after
        # the last one, `by_session` is sorted)
        lo_pos = int(np.searchsorted(by_session[:lo_pos], part.min(), side="left"))
        hi_pos += int(np.searchsorted(by_session[hi_pos:], part.max(), side="right"))
        part = by_session[lo_pos:hi_pos]
        q[lo_pos:hi_pos] = arrival[lo_pos:hi_pos][group_by_code(part - part.min())]
    s, t, k = session[q], ts[q], clock[q]
    lo_t, span = int(t.min()), int(t.max() - t.min()) + 1
    if (int(s.max()) + 2) * span >= np.iinfo(np.int64).max // 2:
        return np.zeros(total, dtype=bool)  # cannot pack: leave it all to the exact path
    seg = np.ones(total, dtype=bool)
    seg[1:] = s[1:] != s[:-1]
    # exclusive running max and min of the time within each session: pack the session
    # into the high digits so that one running max restarts at each session (arrays
    # are reused in place to keep the peak memory of a big import down)
    offset = s
    offset *= span
    rel = t - lo_t
    acc = np.maximum.accumulate(rel + offset)
    max_before = np.empty(total, dtype=np.int64)
    max_before[1:] = acc[:-1] - offset[1:] + lo_t
    np.subtract(span - 1, rel, out=rel)
    rel += offset
    np.maximum.accumulate(rel, out=acc)
    del rel
    min_before = np.empty(total, dtype=np.int64)
    min_before[1:] = lo_t + span - 1 - (acc[:-1] - offset[1:])
    del acc, offset, s
    chain = seg | ((t < max_before + timeout) & (t > min_before - timeout))
    del min_before
    # due check against the rows of earlier instants only (one instant is one set)
    group = seg.copy()
    group[1:] |= k[1:] != k[:-1]
    positions = np.arange(total)
    at_group = np.maximum.accumulate(np.where(group, positions, 0))
    del group
    at_session = np.maximum.accumulate(np.where(seg, positions, 0))
    del positions
    due = (k == k[at_session]) | (k <= max_before[at_group] + timeout)
    valid[q] = chain & due
    return valid
