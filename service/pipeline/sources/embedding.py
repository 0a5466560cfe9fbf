"""Users close to the viewer in the graph-embedding space (FAISS)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph.ann import VectorSearch

from ..candidates import SourceResult
from ..reasons import SuggestionReason


@dataclass(frozen=True)
class EmbeddingNeighbours:
    search: VectorSearch
    k: int = 100
    name: str = "embedding"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, scores = self.search.neighbours(viewer_row, self.k)
        keep = scores > 0
        return SourceResult(self.name, SuggestionReason.SIMILAR_NETWORK, rows[keep],
                            scores[keep].astype(np.float64))
