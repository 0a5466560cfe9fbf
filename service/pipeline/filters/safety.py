"""Filter and take: the safety rules run down the ranking in batches until
enough candidates have passed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from graph.store import GraphStore
from service.pipeline.reasons import FilterReason
from service.safety.engine import SafetyEngine, Viewer, member


@dataclass
class SafetyFilterAndTake:
    """Every rule in ``service.safety.rules`` for suggestions, fail closed,
    over candidates in rank order. ``max_candidates``: the most kept. The
    first batch holds ``batch_per_wanted`` candidates per one wanted plus
    ``batch_margin`` (about half pass on the synthetic network); each later
    batch doubles."""

    safety: SafetyEngine
    store: GraphStore
    max_candidates: int = 500
    batch_per_wanted: int = 2
    batch_margin: int = 8
    name: str = "safety"

    def __call__(self, facts: Viewer, rows: np.ndarray, user_ids: np.ndarray, order: np.ndarray, now: float,
                 limit: int | None, exclude: Sequence[int]) -> tuple[np.ndarray, dict[FilterReason, int]]:
        """Indices into ``rows`` (int64) that pass, in ``order``, and the
        removals by first reason among the candidates examined. ``limit``:
        stop once that many candidates not in ``exclude`` (external ids)
        have passed; None: filter them all."""
        excluded = np.unique(np.asarray(exclude, np.int64))
        removed: dict[FilterReason, int] = {}
        kept: list[np.ndarray] = []
        n_kept = n_fresh = 0
        start = 0
        batch = order.shape[0] if limit is None else (limit + excluded.shape[0]) * self.batch_per_wanted \
            + self.batch_margin
        while start < order.shape[0] and n_kept < self.max_candidates and (limit is None or n_fresh < limit):
            idx = order[start:start + batch]
            start += idx.shape[0]
            batch *= 2
            verdict = self.safety.filter_suggestions(self.store, facts.row, rows[idx], now, facts=facts)
            for r, n in verdict.removed.items():
                removed[r] = removed.get(r, 0) + n
            passed = idx[verdict.keep][: self.max_candidates - n_kept]
            kept.append(passed)
            n_kept += passed.shape[0]
            if limit is not None:
                n_fresh += int(passed.shape[0] - member(excluded, user_ids[passed]).sum())
        taken = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        return taken, removed
