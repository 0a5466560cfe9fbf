"""Ranking metrics per user and the paired bootstrap.

A ranked list is an int array of candidates, best first; the truth is the
set of relevant ones (an int array, no duplicates). All metrics are per
user; a method's score is their mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def hit_positions(ranked: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """0-based positions in ``ranked`` that hold a relevant item, ascending."""
    return np.flatnonzero(np.isin(ranked, truth))


def recall_at(ranked: np.ndarray, truth: np.ndarray, k: int) -> float:
    if truth.shape[0] == 0:
        return 0.0
    return float(np.isin(ranked[:k], truth).sum()) / float(truth.shape[0])


def reciprocal_rank(ranked: np.ndarray, truth: np.ndarray) -> float:
    """1 / (rank of the first relevant item), 0 if none is ranked."""
    hits = hit_positions(ranked, truth)
    return 1.0 / float(hits[0] + 1) if hits.shape[0] else 0.0


def ndcg_at(ranked: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Binary-relevance NDCG@k: DCG over the ideal DCG of min(|truth|, k)
    hits at the top."""
    if truth.shape[0] == 0:
        return 0.0
    hits = hit_positions(ranked[:k], truth)
    dcg = float(np.sum(1.0 / np.log2(hits + 2.0)))
    ideal = float(np.sum(1.0 / np.log2(np.arange(min(truth.shape[0], k)) + 2.0)))
    return dcg / ideal


def recall_curve(ranked: np.ndarray, truth: np.ndarray, k_max: int) -> np.ndarray:
    """Recall@k for k = 1..k_max, shape (k_max,) float64; a list shorter
    than k_max keeps its last value."""
    curve = np.zeros(k_max)
    if truth.shape[0] == 0:
        return curve
    hits = np.cumsum(np.isin(ranked[:k_max], truth)) / float(truth.shape[0])
    curve[: hits.shape[0]] = hits
    if 0 < hits.shape[0] < k_max:
        curve[hits.shape[0]:] = hits[-1]
    return curve


METRICS: tuple[str, ...] = ("recall@10", "recall@20", "mrr", "ndcg@20")


def user_metrics(ranked: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The four METRICS for one user, shape (4,) float64."""
    return np.array([recall_at(ranked, truth, 10), recall_at(ranked, truth, 20),
                     reciprocal_rank(ranked, truth), ndcg_at(ranked, truth, 20)])


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


def paired_bootstrap(method: np.ndarray, ours: np.ndarray, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> Interval:
    """The mean per-user difference ``method - ours`` with a percentile
    bootstrap interval, users resampled with replacement (the same users for
    both: the pairing). Inputs shape (n_users,); deterministic for a seed."""
    diff = np.asarray(method, np.float64) - np.asarray(ours, np.float64)
    n = diff.shape[0]
    if n == 0:
        return Interval(0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = diff[rng.integers(0, n, (stop - start, n))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return Interval(float(diff.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha)))
