"""Nearest-neighbour search over user embeddings with FAISS: exact inner
product below a size threshold, an approximate index above it. Ids are
rows."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

EXACT_BELOW = 200_000
# Chosen by tests/bench/retrieval_bench.py at 1M users on our own vectors:
# IVF with ~sqrt(n) lists and 16 probes reached recall@10 0.997 at p99
# 0.16 ms on one thread, built in 4 s at 136 bytes per vector; HNSW32 (ef 64)
# reached 0.988 at p99 0.49 ms but took 121 s to build at 400 bytes per
# vector. An IVF file can also be memory-mapped and shared by processes.
IVF_PROBES = 16
_TRAIN_PER_LIST = 64


def build_index(vectors: np.ndarray, *, exact_below: int = EXACT_BELOW, nprobe: int = IVF_PROBES,
                seed: int = 7) -> faiss.Index:
    """vectors: (n, d) float32, unit norm (zero rows are indexed but score
    0). Exact inner product below ``exact_below`` rows, else an inverted
    file of about sqrt(n) lists searched ``nprobe`` at a time, trained on a
    seeded sample (the same vectors give the same index)."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    n, dim = vectors.shape
    if n < exact_below:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index
    n_lists = max(1, round(math.sqrt(n)))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, n_lists, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    with_vector = np.flatnonzero(vectors.any(axis=1))
    sample_size = min(with_vector.shape[0], _TRAIN_PER_LIST * n_lists)
    sample = np.sort(np.random.default_rng(seed).choice(with_vector, sample_size, replace=False))
    ivf.train(vectors[sample])
    ivf.add(vectors)
    ivf.nprobe = min(nprobe, n_lists)
    return ivf


def save_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load_index(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


class VectorSearch:
    """Search by row: the query is the row's own vector.

    Beside the snapshot's index sits a small exact index of users folded in
    after it (``fold_in``: a new account gets the weighted mean of its
    neighbours' vectors and is searchable at once, without a rebuild), and a
    set of hidden rows (``hide``: erased, banned, suspended) that no search
    returns from the moment they are hidden. Both are replaced by single
    assignments under a lock, so concurrent searches see a consistent
    state."""

    def __init__(self, vectors: np.ndarray, index: faiss.Index) -> None:
        self.vectors = vectors
        self.index = index
        self._lock = threading.Lock()
        dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        self._extra: tuple[np.ndarray, np.ndarray, faiss.Index] = (
            np.zeros(0, np.int64), np.zeros((0, dim), np.float32), faiss.IndexFlatIP(max(dim, 1)))
        self._hidden = np.zeros(0, np.int64)
        self._prefetched: tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]] = (0, {})

    # -- fold-in and hiding ------------------------------------------------
    def vector(self, row: int) -> npt.NDArray[np.float32] | None:
        """The row's vector (dim,) float32: folded-in first, then the
        snapshot's; None when it has none."""
        rows, vecs, _ = self._extra
        i = int(np.searchsorted(rows, row))
        if i < rows.shape[0] and rows[i] == row:
            folded: npt.NDArray[np.float32] = vecs[i]
            return folded
        if 0 <= row < self.vectors.shape[0] and self.vectors[row].any():
            return np.asarray(self.vectors[row])
        return None

    def fold_in(self, row: int, neighbours: np.ndarray, weights: np.ndarray | None = None) -> bool:
        """Give ``row`` the normalised weighted mean of its neighbours'
        vectors (rows int, weights float, default 1) and make it searchable.
        False, and nothing changes, when no neighbour has a vector."""
        neighbours = np.asarray(neighbours, np.int64)
        weights = np.ones(neighbours.shape[0]) if weights is None else np.asarray(weights, np.float64)
        found = [(self.vector(int(r)), float(w)) for r, w in zip(neighbours.tolist(), weights.tolist(), strict=True)]
        usable = [(v, w) for v, w in found if v is not None and w > 0]
        if not usable:
            return False
        mean = np.sum([v.astype(np.float64) * w for v, w in usable], axis=0)
        length = float(np.linalg.norm(mean))
        if length == 0:
            return False
        vec = (mean / length).astype(np.float32)
        with self._lock:
            rows, vecs, _ = self._extra
            keep = rows != row
            rows = np.concatenate([rows[keep], [row]])
            vecs = np.vstack([vecs[keep], vec[None, :]])
            order = np.argsort(rows)
            rows, vecs = rows[order], np.ascontiguousarray(vecs[order])
            index = faiss.IndexFlatIP(vecs.shape[1])
            index.add(vecs)
            self._extra = (rows, vecs, index)
            self._prefetched = (0, {})
        return True

    def hide(self, rows: np.ndarray) -> None:
        """Never return these rows again (until a new snapshot)."""
        with self._lock:
            self._hidden = np.union1d(self._hidden, np.asarray(rows, np.int64))
            self._prefetched = (0, {})

    def prefetch(self, rows: np.ndarray, k: int) -> None:
        """Search for many rows in one call and remember the answers, which
        ``neighbours(row, k')`` then returns for any k' <= k without an
        ``exclude``. For offline callers (the ranker's training asks for
        thousands of users at once: one matrix product instead of thousands
        of searches); folding in or hiding forgets them."""
        rows = np.asarray(rows, np.int64)
        inside = rows[(rows >= 0) & (rows < self.vectors.shape[0])]
        queries = np.ascontiguousarray(self.vectors[inside], np.float32)
        has_vector = queries.any(axis=1)
        inside, queries = inside[has_vector], queries[has_vector]
        answers: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if inside.shape[0] and k > 0 and self._extra[0].shape[0] == 0:
            fetch = min(k + 1 + min(self._hidden.shape[0], 4 * k), int(self.index.ntotal))
            scores, found = self.index.search(queries, fetch)
            for row, r, sc in zip(inside.tolist(), found, scores, strict=True):
                keep = (r >= 0) & (r != row)
                if self._hidden.shape[0]:
                    keep &= ~np.isin(r, self._hidden)
                if int(keep.sum()) >= k or fetch >= int(self.index.ntotal):
                    answers[row] = (r[keep][:k].astype(np.int32), sc[keep][:k].astype(np.float32))
        with self._lock:
            self._prefetched = (k, answers)

    @property
    def folded_in(self) -> int:
        return int(self._extra[0].shape[0])

    # -- search ------------------------------------------------------------
    def neighbours(self, row: int, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Up to k rows closest to ``row`` (excluding itself, hidden rows
        and any row in ``exclude``), with inner product scores: (rows int32,
        scores float32), best first, folded-in users included. Empty for
        rows without a vector.

        Exclusions are filtered after an over-fetch that doubles until k
        rows survive or the index is exhausted (a FAISS ID selector knocks
        the exact index off its BLAS path, so it does not pay here)."""
        prefetched_k, answers = self._prefetched
        if exclude is None and k <= prefetched_k and row in answers:
            rows, scores = answers[row]
            return rows[:k], scores[:k]
        query = self.vector(row)
        if query is None or k <= 0:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        q = np.ascontiguousarray(query[None, :], np.float32)
        banned = self._hidden
        if exclude is not None:
            banned = np.union1d(banned, np.asarray(exclude, np.int64))
        extra_rows, _, extra_index = self._extra
        # Folded-in rows are searched in the small index only.
        shadowed = np.union1d(banned, extra_rows)
        rows, scores = self._search_main(q, row, k, shadowed)
        if extra_rows.shape[0]:
            s, i = extra_index.search(q, min(k + 1, extra_rows.shape[0]))
            found = i[0] >= 0
            e_rows, e_scores = extra_rows[i[0][found]], s[0][found]
            keep = (e_rows != row) & ~np.isin(e_rows, banned)
            rows = np.concatenate([rows, e_rows[keep]])
            scores = np.concatenate([scores, e_scores[keep]])
            order = np.lexsort((rows, -scores))[:k]
            rows, scores = rows[order], scores[order]
        return rows.astype(np.int32), scores.astype(np.float32)

    def _search_main(self, q: np.ndarray, row: int, k: int, banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = int(self.index.ntotal)
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        fetch = min(k + 1 + min(banned.shape[0], 4 * k), total)
        while True:
            scores, rows = self.index.search(q, fetch)
            rows, scores = rows[0], scores[0]
            keep = (rows >= 0) & (rows != row)
            if banned.shape[0]:
                keep &= ~np.isin(rows, banned)
            if int(keep.sum()) >= k or fetch >= total:
                return rows[keep][:k], scores[keep][:k]
            fetch = min(fetch * 2, total)

    def scores(self, row: int, candidates: np.ndarray) -> np.ndarray:
        """Inner products of ``row``'s vector with candidates' (float32);
        0 for rows without a vector."""
        if row < 0 or row >= self.vectors.shape[0]:
            return np.zeros(candidates.shape[0], np.float32)
        inside = candidates < self.vectors.shape[0]
        out = np.zeros(candidates.shape[0], np.float32)
        out[inside] = self.vectors[candidates[inside]] @ self.vectors[row]
        return out
