"""Ordering rows by (profile, time) in linear time where the input allows it.

Events are stored, and arrive, mostly in time order per profile. A stable radix sort on
the profile code (16 bits a pass) groups each profile's rows in arrival order; only the
profiles whose times then run backwards are sorted by time, which is rare.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


def group_by_code(code: I64) -> I64:
    """A stable order of the rows grouped by `code` (non-negative integers)."""
    order = np.arange(len(code), dtype=np.int64)
    top = int(code.max()) if len(code) else 0
    shift = 0
    while True:
        digit = ((code[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
        if top >> shift == 0:
            return order


def by_profile_and_time(code: I64, ts: I64, clock: I64 | None = None) -> I64:
    """Rows in (code, [clock,] ts, input position) order; inputs are in arrival order.

    `clock` (when given) never decreases along the input, so within a profile the
    arrival order is already the clock order.
    """
    order = group_by_code(code)
    c, t = code[order], ts[order]
    backwards = np.flatnonzero((c[1:] == c[:-1]) & (t[1:] < t[:-1]))
    if len(backwards):
        flagged = np.zeros(int(c.max()) + 1, dtype=bool)
        flagged[c[backwards]] = True
        rows = np.flatnonzero(flagged[c])
        sub = order[rows]
        keys = (ts[sub], code[sub]) if clock is None else (ts[sub], clock[sub], code[sub])
        order[rows] = sub[np.lexsort(keys)]
    return order
