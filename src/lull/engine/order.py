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


def sorted_by_code_time_seq(code: I64, ts: I64, seq: I64) -> tuple[I64, I64, I64]:
    """The rows' (code, ts, seq) in (code, ts, seq) order, from any input order (`seq`
    unique, non-negative codes): the rows `by_code_time_seq` puts in order.

    Sorts values, not indexes: (code, seq) packed in one int64, which a vectorized sort
    orders in a fifth of an argsort's time, gives each profile's events in arrival
    order; each row's time is then looked up by its seq. Events arrive mostly in time
    order, so the (code, ts) keys are then in order but for the few events that came
    after a later one of their profile (below the running maximum of the keys). Each
    such event belongs before the rows from the first one whose running maximum is
    above its key; only those stretches (a small part of the rows) are sorted again,
    in place. At 10M rows: 0.5 s against 1.1-1.5 s for `by_code_time_seq` and three
    gathers. Falls back to those when the packed keys do not fit or the seqs are spread
    wide.
    """
    n = len(code)
    if not n:
        return code.copy(), ts.copy(), seq.copy()
    lo, span = int(seq.min()), int(seq.max()) - int(seq.min()) + 1
    sbits = (span - 1).bit_length()
    tlo = int(ts.min())
    tbits = (int(ts.max()) - tlo).bit_length()
    cbits = int(code.max()).bit_length()
    if int(code.min()) < 0 or cbits + max(sbits, tbits) > 62 or span > 4 * n + 1024:
        order = by_code_time_seq(code, ts, seq)
        return code[order], ts[order], seq[order]
    # (fresh memory is dear: each new array of 10M rows costs 0.05-0.25 s in page faults
    # on a first run, so the buffers are few and reused)
    v = code << sbits
    v += seq  # (code, seq - lo) as (code << sbits) | (seq - lo), less lo below
    v -= lo
    v.sort()
    c = v >> sbits
    buffer = np.empty(span, dtype=np.int64)  # the times by seq, then the keys
    buffer[seq - lo if lo else seq] = ts
    v &= (1 << sbits) - 1  # the seqs, less `lo`
    t = buffer[v]
    v += lo
    s = v
    k = np.left_shift(c, tbits, out=buffer[:n])
    k += t
    k -= tlo  # (code, ts) in (code, seq) order
    high = np.maximum.accumulate(k)
    late = np.flatnonzero(k < high)
    if not len(late):
        return c, t, s
    # each late row and the rows before it back to the first whose running maximum is
    # above its key: a stretch sorted again on its own (stretches that overlap as one)
    begin = np.searchsorted(high, k[late], side="right")
    del high
    by_begin = np.argsort(begin, kind="stable")
    begin, end = begin[by_begin], np.maximum.accumulate(late[by_begin] + 1)
    fresh = np.ones(len(begin), dtype=bool)
    fresh[1:] = begin[1:] >= end[:-1]
    heads = np.flatnonzero(fresh)
    lows, highs = begin[heads], end[np.append(heads[1:], len(begin)) - 1]
    sizes = highs - lows
    rows = np.repeat(lows - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
    order = np.argsort(k[rows], kind="stable")  # (equal keys: in arrival order)
    t[rows] = t[rows[order]]
    s[rows] = s[rows[order]]
    return c, t, s
