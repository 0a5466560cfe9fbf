"""Nearest-neighbour search over user embeddings with FAISS: exact inner
product below a size threshold, HNSW above it. Ids are rows."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

EXACT_BELOW = 200_000


def build_index(vectors: np.ndarray, *, exact_below: int = EXACT_BELOW, hnsw_m: int = 32,
                ef_construction: int = 80) -> faiss.Index:
    """vectors: (n, d) float32, unit norm (zero rows are indexed but score 0)."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    n, dim = vectors.shape
    if n < exact_below:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = 64
    index.add(vectors)
    return index


def save_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load_index(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


class VectorSearch:
    """Search by row: the query is the row's own vector."""

    def __init__(self, vectors: np.ndarray, index: faiss.Index) -> None:
        self.vectors = vectors
        self.index = index

    def neighbours(self, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to k rows closest to ``row`` (excluding itself), with inner
        product scores: (rows int32, scores float32), best first. Empty for
        rows without a vector."""
        if row < 0 or row >= self.vectors.shape[0] or not self.vectors[row].any():
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        k = min(k + 1, self.index.ntotal)
        scores, rows = self.index.search(self.vectors[row: row + 1], k)
        rows, scores = rows[0], scores[0]
        keep = (rows >= 0) & (rows != row)
        return rows[keep].astype(np.int32), scores[keep]

    def scores(self, row: int, candidates: np.ndarray) -> np.ndarray:
        """Inner products of ``row``'s vector with candidates' (float32);
        0 for rows without a vector."""
        if row < 0 or row >= self.vectors.shape[0]:
            return np.zeros(candidates.shape[0], np.float32)
        inside = candidates < self.vectors.shape[0]
        out = np.zeros(candidates.shape[0], np.float32)
        out[inside] = self.vectors[candidates[inside]] @ self.vectors[row]
        return out
