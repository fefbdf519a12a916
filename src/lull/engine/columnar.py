"""R2-R5 over a whole import at once, with NumPy.

Most profiles are *regular*: taken in arrival order their events run forward in time, and
each one that joins a session arrives before that session falls due. For them the live
replay equals R2 over the events, found set-wise: sort by (profile, clock, time), mark
gaps of at least the timeout, and number the runs. Every other profile (events older
than a session already concluded, or arriving after their session fell due) is flagged
`slow` for the exact engine (`exact.replay`), which replays it instant by instant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lull.engine.order import by_profile_and_time

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
NONE = np.iinfo(np.int64).min  # "no value" in the int64 state arrays


@dataclass(slots=True)
class Prior:
    """Per profile code, what the store remembers: the open session and the horizon."""

    open_first: I64
    open_last: I64
    horizon: I64


@dataclass(slots=True)
class Runs:
    """The outcome for the regular profiles.

    `order` sorts the input rows by (profile, clock, time, arrival). Along it, `slow`
    marks the rows left to the exact engine. Regular rows are cut into runs,
    each either a new session (`new`) or the continuation of the profile's open session;
    `row_run` gives each sorted row its run (-1 for slow rows). A run is `closed` when
    a later run of the same profile shows it is over; the last run of a profile stays
    open until the clock passes its due time. A profile may be regular up to some
    instant and slow after it: then its last regular run is `handed` to the exact
    engine as the open session it starts from.
    """

    order: I64
    slow: BOOL
    row_run: I64
    start: I64  # first sorted row of each run
    end: I64  # last sorted row of each run
    new: BOOL
    closed: BOOL
    handed: BOOL  # a profile's last regular run, which its slow rows continue from
    ended_open: I64  # codes whose open session was closed without being extended


def sessionize(code: I64, ts: I64, clock: I64, prior: Prior, timeout: int) -> Runs:
    """Cut regular profiles into sessions; flag the others as slow. Inputs are in arrival order."""
    n = len(code)
    order = by_profile_and_time(code, ts, clock)
    c, t, k = code[order], ts[order], clock[order]
    first = np.ones(n, dtype=bool)
    first[1:] = c[1:] != c[:-1]

    prev_t = np.empty(n, dtype=np.int64)
    prev_t[1:] = t[:-1]
    prev_k = np.empty(n, dtype=np.int64)
    prev_k[1:] = k[:-1]
    o_last = prior.open_last[c]
    has_open = first & (o_last != NONE)
    prev_t[first] = o_last[first]
    prev_k[first] = NONE  # the open session arrived at an earlier instant
    has_prev = ~first | has_open

    gap = t - prev_t
    joins = has_prev & (gap < timeout)
    irregular = has_prev & (t < prev_t)
    # joins a session that fell due before this instant: late, or not R2 -> exact path
    irregular |= joins & (k != prev_k) & (k > prev_t + timeout)
    horizon = prior.horizon[c]
    irregular |= first & ~has_open & (horizon != NONE) & (t < horizon)

    # A profile is exact from its first irregular row on (always the first row of an
    # arrival instant); the rows before it are a regular prefix, cut into runs here.
    n_codes = len(prior.horizon)
    first_bad = np.full(n_codes, n, dtype=np.int64)
    bad_rows = np.flatnonzero(irregular)
    np.minimum.at(first_bad, c[bad_rows], bad_rows)
    slow = np.arange(n) >= first_bad[c]

    fast = ~slow
    new = fast & ~joins
    is_start = fast & (new | first)
    starts = np.flatnonzero(is_start)
    # a run ends just before the next run or profile begins
    bounds = np.r_[np.flatnonzero(first | new | slow), n]
    ends = bounds[np.searchsorted(bounds, starts, side="right")] - 1
    run_new = new[starts]
    run_code = c[starts]
    last_of_profile = np.ones(len(starts), dtype=bool)
    last_of_profile[:-1] = run_code[1:] != run_code[:-1]

    row_run = np.full(n, -1, dtype=np.int64)
    run_index = np.cumsum(is_start) - 1
    row_run[fast] = run_index[fast]

    # an open session whose profile's first run here is new is over (R2: gap >= timeout)
    first_runs = np.ones(len(starts), dtype=bool)
    first_runs[1:] = run_code[1:] != run_code[:-1]
    ended = first_runs & run_new & (prior.open_last[run_code] != NONE)
    return Runs(
        order=order,
        slow=slow,
        row_run=row_run,
        start=starts.astype(np.int64),
        end=ends.astype(np.int64),
        new=run_new,
        closed=~last_of_profile,
        handed=last_of_profile & (first_bad[run_code] < n),
        ended_open=run_code[ended].astype(np.int64),
    )
