"""Compressed sparse rows over dense int32 user rows, and the vectorised
operations the store needs on them.

A CSR holds ``indptr`` (shape (n+1,), int32 while the edge count fits,
else int64) and ``indices`` (shape (nnz,), int32, sorted within each row),
plus optional per-edge value columns aligned with ``indices``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

ROW = np.int32

# ``CSR.positions`` searches pair by pair up to this many pairs.
_SCALAR_SEARCH_MAX = 8


def _pointer_dtype(nnz: int) -> type:
    return np.int32 if nnz < 2**31 - 1 else np.int64


@dataclass(frozen=True)
class CSR:
    indptr: np.ndarray
    indices: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.indptr.shape[0]) - 1

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    @staticmethod
    def empty(n_rows: int, value_dtypes: dict[str, type] | None = None) -> CSR:
        return CSR(
            np.zeros(n_rows + 1, np.int32),
            np.zeros(0, ROW),
            {k: np.zeros(0, d) for k, d in (value_dtypes or {}).items()},
        )

    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + sum(v.nbytes for v in self.values.values())

    def span(self, row: int) -> tuple[int, int]:
        """Start and end offsets of a row; (0, 0) for rows past the end."""
        if row < 0 or row >= self.indptr.shape[0] - 1:
            return 0, 0
        return int(self.indptr[row]), int(self.indptr[row + 1])

    def row(self, row: int) -> np.ndarray:
        start, end = self.span(row)
        return self.indices[start:end]

    def contains(self, row: int, col: int) -> bool:
        start, end = self.span(row)
        if start == end:
            return False
        i = start + int(np.searchsorted(self.indices[start:end], col))
        return i < end and int(self.indices[i]) == col

    def positions(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """For each (row, col) pair, the edge offset in ``indices`` or -1 if
        absent. Vectorised binary search: one pass per bit of the longest
        row, whatever the number of pairs."""
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        if self.nnz == 0:
            return np.full(rows.shape, -1, np.int64)
        if rows.shape[0] <= _SCALAR_SEARCH_MAX:
            # A few pairs: one search each beats a numpy pass per bit.
            out = np.full(rows.shape, -1, np.int64)
            for k, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
                lo, hi = self.span(row)
                i = lo + int(self.indices[lo:hi].searchsorted(col))
                if i < hi and int(self.indices[i]) == col:
                    out[k] = i
            return out
        inside = (rows >= 0) & (rows < self.n_rows)
        safe = np.where(inside, rows, 0)
        start = self.indptr[safe].astype(np.int64)
        length = np.where(inside, self.indptr[safe + 1] - start, 0)
        end = start + length
        # Branch-free halving: the first offset >= col lies in [base, base + n].
        # Four array passes a step against the classic search's ten; an
        # empty row searches from 0 (always readable, never reported).
        base = np.where(length > 0, start, 0)
        n = length.copy()
        indices = self.indices
        while n.max() > 1:
            half = n >> 1
            mid = base + half
            base = np.where(indices[mid] < cols, mid, base)
            n -= half
        lower = base + (indices[base] < cols)
        found = (length > 0) & (lower < end) & (indices[np.minimum(lower, self.nnz - 1)] == cols)
        return np.where(found, lower, -1)

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """All edges as (src, dst) int32 arrays, in row order."""
        src = np.repeat(np.arange(self.n_rows, dtype=ROW), np.diff(self.indptr))
        return src, self.indices


def from_pairs(src: np.ndarray, dst: np.ndarray, n_rows: int,
               values: dict[str, np.ndarray] | None = None) -> CSR:
    """A CSR of the given edges, sorted by (src, dst). Pairs must be
    distinct; values are permuted along with them."""
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    order = np.argsort(src * max(n_rows, 1) + dst, kind="stable")
    counts = np.bincount(src, minlength=n_rows)[:n_rows]
    indptr: npt.NDArray[np.int32 | np.int64] = np.zeros(n_rows + 1, _pointer_dtype(src.shape[0]))
    np.cumsum(counts, out=indptr[1:])
    return CSR(
        indptr,
        dst[order].astype(ROW),
        {k: np.ascontiguousarray(v[order]) for k, v in (values or {}).items()},
    )


def transpose_positions(csr: CSR, n_rows: int) -> CSR:
    """The transpose of ``csr`` whose ``indices`` are offsets into ``csr``'s
    edges (not rows): 4 bytes per edge buys the reverse direction of a
    weighted relation without copying its values. Sources of a row are
    ``np.searchsorted(csr.indptr, offsets, 'right') - 1``, ascending."""
    order = np.argsort(csr.indices, kind="stable")
    counts = np.bincount(csr.indices, minlength=n_rows)[:n_rows]
    indptr: npt.NDArray[np.int32 | np.int64] = np.zeros(n_rows + 1, _pointer_dtype(csr.nnz))
    np.cumsum(counts, out=indptr[1:])
    return CSR(indptr, order.astype(_pointer_dtype(csr.nnz)))


def transpose(csr: CSR, n_rows: int) -> CSR:
    """The transpose as a plain CSR of rows (sources sorted within a row)."""
    src, dst = csr.edges()
    return from_pairs(dst, src, n_rows)


def sources_of(csr: CSR, offsets: np.ndarray) -> np.ndarray:
    """The row of each edge offset."""
    return (np.searchsorted(csr.indptr, offsets, side="right") - 1).astype(ROW)
