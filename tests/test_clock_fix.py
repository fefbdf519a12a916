"""R5's clock fix column-wise (`records.corrected_times`, the Spark landing's) against the
one-event form (`records.corrected_time`) on any times."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from lull.ingest.records import corrected_time, corrected_times

TIME = st.integers(0, 4_000_000_000_000)


@given(st.lists(st.tuples(TIME, st.none() | TIME, TIME), max_size=30))
def test_column_wise_is_the_one_event_rule(rows: list[tuple[int, int | None, int]]) -> None:
    ts = pa.array([t for t, _, _ in rows], pa.int64())
    sent = pa.array([s for _, s, _ in rows], pa.int64())
    received = pa.array([r for _, _, r in rows], pa.int64())
    got = corrected_times(ts, sent, received).to_pylist()
    assert got == [corrected_time(t, s, r) for t, s, r in rows]
