"""Why was (or wasn't) a candidate suggested to a viewer: the sources that
found it, its rank, and every rule that removes it; when the pre-rank's
cap cut it before the ranker, a ``cap.pre_rank`` entry among the sources
whose score is the place the pre-rank gave it (1-based; the cap keeps the
first ``Bounds.pre_rank_keep``). Runs the same flow
object as SuggestContacts (``Pipeline.flow``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graph.model import Surface
from service.pipeline.flow import PRE_RANK_POSITION
from service.pipeline.pipeline import Pipeline
from service.pipeline.pre_rank import PRE_RANK_CAP
from service.pipeline.reasons import FilterReason
from service.pipeline.transforms.social_proof import FRIENDS_OF_FRIENDS


@dataclass
class Explanation:
    sources: dict[str, float] = field(default_factory=dict)
    rank: int = 0  # 1-based; 0 when not suggested
    score: float = 0.0
    filter_reasons: list[FilterReason] = field(default_factory=list)
    ineligible: FilterReason | None = None


def explain(pipeline: Pipeline, viewer_id: int, candidate_id: int, surface: Surface, now: float) -> Explanation:
    flow = pipeline.flow(surface)
    store = pipeline.store
    out = Explanation()
    viewer = store.row(viewer_id)
    out.ineligible = pipeline.safety.viewer_ineligibility(store, viewer)
    candidate = store.row(candidate_id)
    if candidate < 0:
        out.filter_reasons = [FilterReason.MISSING_PROFILE]
        return out
    if viewer >= 0:
        results = flow.gather(viewer, now)
        for result in results:
            hit = np.flatnonzero(result.rows == candidate)
            if hit.shape[0]:
                score = float(result.scores[hit[0]])
                if result.name == FRIENDS_OF_FRIENDS:
                    # Its score is the count of friends in common: only the
                    # ones the viewer may be told of, as on the suggestion
                    # page; none of those, no entry (a candidate found only
                    # through hidden friends must not say so here either).
                    score = float(pipeline.safety.nameable_mutual_count(store, viewer, candidate, now))
                    if not score:
                        continue
                out.sources[result.name] = score
        if out.sources:
            # A cap cut it before the ranker: say so, with the place the
            # pre-rank gave it (only for a candidate some source may be
            # named for, as above).
            _, cut = flow.shortlist_for_ranker(viewer, results)
            hit = np.flatnonzero(cut.rows == candidate)
            if hit.shape[0]:
                out.sources[PRE_RANK_CAP] = float(cut.features[PRE_RANK_POSITION][hit[0]])
        out.filter_reasons = pipeline.safety.suggestion_reasons(store, viewer, candidate, now)
        out.filter_reasons += flow.pre_rank_reasons(viewer, candidate)
    if out.ineligible is None:
        ranked = pipeline.suggest(viewer_id, surface, now)
        where = np.flatnonzero(ranked.user_ids == candidate_id)
        if where.shape[0]:
            out.rank = int(where[0]) + 1
            out.score = float(ranked.scores[where[0]])
    return out
