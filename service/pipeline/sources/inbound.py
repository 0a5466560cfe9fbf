"""People reaching out to the viewer: those who messaged (or otherwise
interacted with) the viewer and got no answer, and followers the viewer does
not follow back."""

from __future__ import annotations

from dataclasses import dataclass

from graph.retrieval import RetrievalConfig, followers_not_followed, unanswered_inbound
from graph.store import GraphStore
from service.pipeline.candidates import SourceResult
from service.pipeline.reasons import SuggestionReason


@dataclass(frozen=True)
class MessagedYou:
    store: GraphStore
    limit: int = RetrievalConfig.inbound_k
    name: str = "messaged_you"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, strength = unanswered_inbound(self.store, viewer_row, now, self.limit)
        return SourceResult(self.name, SuggestionReason.MESSAGED_YOU, rows, strength)


@dataclass(frozen=True)
class FollowsYou:
    store: GraphStore
    limit: int = RetrievalConfig.follower_k
    name: str = "follows_you"
    pool: int | None = None  # ``Bounds.source_pool``

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, ones = followers_not_followed(self.store, viewer_row, self.limit, self.pool)
        return SourceResult(self.name, SuggestionReason.FOLLOWS_YOU, rows, ones)
