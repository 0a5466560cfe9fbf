"""Friends of friends, scored by the number of friends in common."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph.store import GraphStore

from ..candidates import SourceResult
from ..reasons import SuggestionReason


@dataclass(frozen=True)
class FriendsOfFriends:
    store: GraphStore
    limit: int = 500
    name: str = "friends_of_friends"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, counts = self.store.friends_of_friends(viewer_row)
        if rows.shape[0] > self.limit:
            top = np.lexsort((rows, -counts))[: self.limit]
            rows, counts = rows[top], counts[top]
        return SourceResult(self.name, SuggestionReason.MUTUAL_FRIENDS, rows, counts.astype(np.float64))
