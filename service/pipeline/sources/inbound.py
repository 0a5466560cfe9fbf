"""People reaching out to the viewer: those who messaged (or otherwise
interacted with) the viewer and got no answer, and followers the viewer does
not follow back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph.store import GraphStore

from ..candidates import SourceResult
from ..reasons import SuggestionReason


@dataclass(frozen=True)
class MessagedYou:
    store: GraphStore
    name: str = "messaged_you"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, strength, _ = self.store.inbound_interactions(viewer_row, now)
        answered, _, _ = self.store.interaction_partners(viewer_row, now)
        keep = ~np.isin(rows, answered)
        return SourceResult(self.name, SuggestionReason.MESSAGED_YOU, rows[keep], strength[keep])


@dataclass(frozen=True)
class FollowsYou:
    store: GraphStore
    limit: int = 200
    name: str = "follows_you"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        followers = self.store.followers(viewer_row)
        rows = followers[~np.isin(followers, self.store.following(viewer_row))][: self.limit]
        return SourceResult(self.name, SuggestionReason.FOLLOWS_YOU, rows, np.ones(rows.shape[0]))
