"""`lull.engine.order.order_rows` (resessionize's sort) is R2's order, and its runs R2's.

R2 orders each profile's events by (time, arrival) and cuts where the gap is at least
the timeout. The function sorts packed (code, seq) values and then only the stretches
around events that came after a later one of their profile, so the cases that matter
are: arrivals in time order, a few late ones (short and long ways back), ties of time
within a profile, wholly shuffled input, seqs with gaps and an offset, input in several
chunks, and inputs too wide to pack (its fallbacks).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.engine.order import order_rows


def _check(code: np.ndarray, ts: np.ndarray, seq: np.ndarray, room: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(code) + 1, int(rng.integers(0, 4))))
    chunks = [
        (c, t, s)
        for c, t, s in zip(
            np.split(code, cuts), np.split(ts, cuts), np.split(seq, cuts), strict=True
        )
    ]
    order = np.lexsort((seq, ts, code))
    got = order_rows(chunks, room)
    every = np.arange(len(code))
    assert np.array_equal(got.seq, seq[order])
    assert np.array_equal(got.code(every), code[order])
    assert np.array_equal(got.ts(every), ts[order])
    c, t = code[order], ts[order]
    new = np.ones(len(code), dtype=bool)
    new[1:] = (c[1:] != c[:-1]) | (t[1:] - t[:-1] >= room)
    assert np.array_equal(got.run_starts(room), np.flatnonzero(new))


@settings(max_examples=300, deadline=None)
@given(
    profiles=st.integers(1, 5),
    steps=st.lists(st.integers(0, 4), min_size=0, max_size=80),
    late=st.lists(st.tuples(st.integers(0, 79), st.integers(1, 40)), max_size=8),
    seq_step=st.integers(1, 3),
    seq_base=st.sampled_from([0, 7, 2**40]),
    ts_scale=st.sampled_from([1, 1_000, 2**20]),
    seed=st.integers(0, 2**32 - 1),
)
def test_arrivals_mostly_in_time_order(
    profiles: int,
    steps: list[int],
    late: list[tuple[int, int]],
    seq_step: int,
    seq_base: int,
    ts_scale: int,
    seed: int,
) -> None:
    """Arrival (seq) order is time order but for a few events that arrive late, read
    back in arrival order or shuffled; steps of 0 make ties of time."""
    rng = np.random.default_rng(seed)
    n = len(steps)
    ts = np.cumsum(np.array(steps, dtype=np.int64)) * ts_scale + 1_700_000_000_000
    for at, back in late:
        if at < n:
            ts[at] -= back * ts_scale  # this event arrives after later ones
    code = rng.integers(0, profiles, n).astype(np.int64)
    seq = np.arange(n, dtype=np.int64) * seq_step + seq_base
    room = 3 * ts_scale
    _check(code, ts, seq, room, seed)
    shuffled = rng.permutation(n)
    _check(code[shuffled], ts[shuffled], seq[shuffled], room, seed)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 9)), min_size=0, max_size=60),
    scale=st.sampled_from([1, 1_000, 10**12, 2**40]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_order_and_too_wide_to_pack(rows: list[tuple[int, int]], scale: int, seed: int) -> None:
    """Times in no order at all; with scale 2**40 and codes spread to 2**30, (code, time)
    does not fit one int64 (the fallback); seqs spread far apart (a span of more than
    four per row) also take the fallback."""
    rng = np.random.default_rng(seed)
    code = np.array([c for c, _ in rows], dtype=np.int64)
    if scale == 2**40:
        code = code << 27
    ts = np.array([t for _, t in rows], dtype=np.int64) * scale
    seq = rng.permutation(len(rows)).astype(np.int64) * (1 if scale == 1 else 5_000)
    _check(code, ts, seq, 2 * scale, seed)
