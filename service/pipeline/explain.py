"""Why was (or wasn't) a candidate suggested to a viewer: the sources that
found it, its rank, and every rule that removes it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graph.model import Surface

from service.pipeline.pipeline import Pipeline
from service.pipeline.reasons import FilterReason
from service.pipeline.sources import FriendsOfFriends


@dataclass
class Explanation:
    sources: dict[str, float] = field(default_factory=dict)
    rank: int = 0  # 1-based; 0 when not suggested
    score: float = 0.0
    filter_reasons: list[FilterReason] = field(default_factory=list)
    ineligible: FilterReason | None = None


def explain(pipeline: Pipeline, viewer_id: int, candidate_id: int, surface: Surface, now: float) -> Explanation:
    surface = Surface.NEW_CONTACTS if surface == Surface.UNSPECIFIED else surface
    store = pipeline.store
    out = Explanation()
    viewer = store.row(viewer_id)
    out.ineligible = pipeline.safety.viewer_ineligibility(store, viewer)
    candidate = store.row(candidate_id)
    if candidate < 0:
        out.filter_reasons = [FilterReason.MISSING_PROFILE]
        return out
    if viewer >= 0:
        for source in pipeline.sources_for(surface):
            result = source(viewer, now)
            hit = np.flatnonzero(result.rows == candidate)
            if hit.shape[0]:
                score = float(result.scores[hit[0]])
                if isinstance(source, FriendsOfFriends):
                    # Its score is the count of friends in common: only the
                    # ones the viewer may be told of, as on the suggestion
                    # page; none of those, no entry (a candidate found only
                    # through hidden friends must not say so here either).
                    score = float(pipeline.safety.nameable_mutual_count(store, viewer, candidate, now))
                    if not score:
                        continue
                out.sources[source.name] = score
        out.filter_reasons = pipeline.safety.suggestion_reasons(store, viewer, candidate, now)
        if surface == Surface.NEW_CONTACTS and store.interactions.get(viewer, candidate) is not None:
            out.filter_reasons.append(FilterReason.EXISTING_CONTACT)
    if out.ineligible is None:
        ranked = pipeline.suggest(viewer_id, surface, now)
        where = np.flatnonzero(ranked.user_ids == candidate_id)
        if where.shape[0]:
            out.rank = int(where[0]) + 1
            out.score = float(ranked.scores[where[0]])
    return out
