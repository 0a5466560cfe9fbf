"""The viewer's existing contacts by decayed interaction strength (the
share sheet's first rows)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph.store import GraphStore
from service.pipeline.candidates import SourceResult
from service.pipeline.reasons import SuggestionReason


@dataclass(frozen=True)
class RecentContacts:
    store: GraphStore
    limit: int = 200
    name: str = "recent_contacts"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, strength = self.store.top_interactions(viewer_row, self.limit, now)
        return SourceResult(self.name, SuggestionReason.RECENT_CONTACT, rows, strength.astype(np.float64))
