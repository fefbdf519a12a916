"""engine/sets.py against NumPy's own set operations, on any integer arrays."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lull.engine.sets import distinct, first_places

ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.int64, np.int32, np.uint32]),
    shape=st.integers(0, 200),
    elements=st.integers(0, 40),
)


@given(ARRAYS)
def test_distinct_is_unique(values: np.ndarray) -> None:
    assert np.array_equal(distinct(values), np.unique(values))


@given(ARRAYS)
def test_first_places_are_unique_s_indexes(values: np.ndarray) -> None:
    assert np.array_equal(first_places(values), np.unique(values, return_index=True)[1])
