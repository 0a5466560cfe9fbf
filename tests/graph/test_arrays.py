"""graph.arrays against numpy's own set operations."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from graph import arrays as ga

_ints = arrays(np.int64, st.integers(0, 6000), elements=st.integers(-50, 50))


class TestSetOperations:
    @settings(max_examples=60, deadline=None)
    @given(_ints)
    def test_unique_matches_numpy(self, values: np.ndarray) -> None:
        """Sorted distinct values, as np.unique gives them."""
        assert np.array_equal(ga.unique(values), np.unique(values))

    @settings(max_examples=60, deadline=None)
    @given(_ints, _ints)
    def test_isin_matches_numpy(self, values: np.ndarray, others: np.ndarray) -> None:
        """Membership agrees with np.isin both below and above the size at
        which the queries are sorted first."""
        assert np.array_equal(ga.isin(values, others), np.isin(values, others))

    def test_member_keeps_shape(self) -> None:
        """A 2-D query gets a 2-D answer."""
        got = ga.member(np.array([[1, 5], [7, 2]]), np.array([2, 5]))
        assert got.tolist() == [[False, True], [False, True]]
