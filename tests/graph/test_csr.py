"""CSR.positions against a brute-force scan (hypothesis): every pair's
offset, -1 for absent pairs, rows out of range and empty rows, on both the
pair-by-pair path (few pairs) and the vectorised one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.csr import CSR, from_pairs


def _scan(m: CSR, row: int, col: int) -> int:
    if not 0 <= row < m.n_rows:
        return -1
    for i in range(int(m.indptr[row]), int(m.indptr[row + 1])):
        if int(m.indices[i]) == col:
            return i
    return -1


@settings(max_examples=300, deadline=None)
@given(n_rows=st.integers(1, 40),
       edges=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=300),
       queries=st.lists(st.tuples(st.integers(-2, 42), st.integers(-1, 42)), min_size=1, max_size=60))
def test_positions_match_a_scan(n_rows: int, edges: list[tuple[int, int]], queries: list[tuple[int, int]]) -> None:
    pairs = sorted({(a % n_rows, b % n_rows) for a, b in edges})
    src = np.array([a for a, _ in pairs], np.int64)
    dst = np.array([b for _, b in pairs], np.int64)
    m = from_pairs(src, dst, n_rows)
    rows = np.array([r for r, _ in queries], np.int64)
    cols = np.array([c for _, c in queries], np.int64)
    assert m.positions(rows, cols).tolist() == [_scan(m, r, c) for r, c in queries]
