"""Candidates gathered from every source, one row per distinct user, with
each source's score (0 where a source did not find the user)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.pipeline.reasons import SuggestionReason


@dataclass
class SourceResult:
    """What one source found: rows (int32) and a score per row (float64)."""

    name: str
    reason: SuggestionReason
    rows: np.ndarray
    scores: np.ndarray


@dataclass
class Candidates:
    rows: np.ndarray  # int32, distinct, ascending
    features: dict[str, np.ndarray] = field(default_factory=dict)  # float64 per row
    found_by: dict[str, np.ndarray] = field(default_factory=dict)  # bool per row

    @staticmethod
    def merge(results: list[SourceResult]) -> Candidates:
        rows = np.unique(np.concatenate([r.rows for r in results])) if results else np.zeros(0, np.int32)
        rows = rows.astype(np.int32)
        merged = Candidates(rows)
        for r in results:
            pos = np.searchsorted(rows, r.rows)
            score = np.zeros(rows.shape[0], np.float64)
            score[pos] = r.scores
            found = np.zeros(rows.shape[0], bool)
            found[pos] = True
            merged.features[r.name] = score
            merged.found_by[r.name] = found
        return merged

    def select(self, mask: np.ndarray) -> Candidates:
        return Candidates(
            self.rows[mask],
            {k: v[mask] for k, v in self.features.items()},
            {k: v[mask] for k, v in self.found_by.items()},
        )

    def __len__(self) -> int:
        return int(self.rows.shape[0])
