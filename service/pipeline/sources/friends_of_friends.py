"""Friends of friends, scored by the number of friends in common."""

from __future__ import annotations

from dataclasses import dataclass, field

from graph.bounds import Bounds
from graph.retrieval import RetrievalConfig, friends_of_friends
from graph.store import GraphStore
from service.pipeline.candidates import SourceResult
from service.pipeline.reasons import SuggestionReason


@dataclass(frozen=True)
class FriendsOfFriends:
    store: GraphStore
    limit: int = RetrievalConfig.friends_of_friends_k
    name: str = "friends_of_friends"
    bounds: Bounds = field(default_factory=Bounds.off)

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, counts = friends_of_friends(self.store, viewer_row, self.limit, self.bounds)
        return SourceResult(self.name, SuggestionReason.MUTUAL_FRIENDS, rows, counts)
