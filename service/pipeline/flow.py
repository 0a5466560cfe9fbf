"""A suggestion flow: one surface's steps, declared as data.

``Flow.run`` calls the steps in this order, and nothing else does work:

1. candidate sources, each over the viewer (``sources``);
2. merge: one row per distinct candidate with each source's score;
3. pre-rank filters (``pre_rank_filters``; e.g. existing contacts);
3b. the pre-rank (``pre_rank``): a cheap order, the head of which (at most
   ``keep``) goes on; the rest is cut (``pre_rank.cut`` counts them);
4. the ranker: a score per candidate, then the order (ties: lower id);
5. filter and take (``take``): the safety rules down the ranking in
   batches until enough have passed;
6. transforms (``transforms``): social proof (mutual counts, reasons);

and, once the caller has cut and answered a page, ``finish`` runs the post
steps (``post``; impressions). Viewer eligibility is checked before the
flow by ``Pipeline.suggest``. Every step counts what it did (``counts``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from graph.model import Surface
from graph.store import GraphStore
from service.pipeline.candidates import Candidates, SourceResult
from service.pipeline.filters.safety import SafetyFilterAndTake
from service.pipeline.ranker import Ranker
from service.pipeline.reasons import FilterReason, SuggestionReason
from service.pipeline.steps import CandidateSource, PostStep, PreRanker, PreRankFilter, Shortlist, Transform
from service.safety.engine import Viewer
from service.server.request_scope import checkpoint, record_counts

# The feature that carries a cut candidate's pre-rank position (1-based).
PRE_RANK_POSITION = "pre_rank.position"


@dataclass
class Ranked:
    """A viewer's whole ranked, filtered list (pages are cut from it)."""

    user_ids: np.ndarray  # int64, best first
    scores: np.ndarray  # float64
    reasons: list[list[SuggestionReason]]
    mutual_counts: np.ndarray  # int64
    ineligible: FilterReason | None = None
    counts: dict[str, int] = field(default_factory=dict)  # per-stage counts for logs

    @staticmethod
    def empty(reason: FilterReason | None) -> Ranked:
        return Ranked(np.zeros(0, np.int64), np.zeros(0), [], np.zeros(0, np.int64), reason)


@dataclass(frozen=True)
class Flow:
    surface: Surface
    sources: tuple[CandidateSource, ...]
    pre_rank_filters: tuple[PreRankFilter, ...]
    ranker: Ranker
    take: SafetyFilterAndTake
    transforms: tuple[Transform, ...]
    post: tuple[PostStep, ...] = ()
    pre_rank: PreRanker | None = None

    def gather(self, viewer_row: int, now: float) -> list[SourceResult]:
        """Steps 1: every source's answer, in ``sources`` order."""
        return [source(viewer_row, now) for source in self.sources]

    def run(self, store: GraphStore, facts: Viewer, now: float, *, limit: int | None = None,
            exclude: Sequence[int] = ()) -> Ranked:
        """Steps 1-6 for an eligible viewer (``facts``); see the module
        docstring. ``limit`` / ``exclude``: see ``SafetyFilterAndTake``."""
        row = facts.row
        results = self.gather(row, now)
        checkpoint("sources")  # the caller's deadline passed or it left: stop here
        counts = {f"source.{r.name}": int(r.rows.shape[0]) for r in results}
        candidates, _ = self.shortlist_for_ranker(row, results, counts)
        scores = self.ranker.rank_scores(row, candidates, self.surface, now)
        user_ids = store.ids.ext(candidates.rows)
        order = self.ranker.order(scores, user_ids)
        kept, removed = self.take(facts, candidates.rows, user_ids, order, now, limit, exclude)
        for r, n in removed.items():
            counts[f"filter.{r.name.lower()}"] = n
        checkpoint("filters")
        shortlist = Shortlist(row, facts, candidates.rows[kept], user_ids[kept], scores[kept],
                              {name: found[kept] for name, found in candidates.found_by.items()},
                              {r.name: r for r in results}, now)
        shortlist.mutual_counts = np.zeros(kept.shape[0], np.int64)
        shortlist.reasons = [[] for _ in range(kept.shape[0])]
        for transform in self.transforms:
            transform(shortlist)
        counts["ranked"] = int(kept.shape[0])
        record_counts(counts)  # per-source and per-reason metrics of a served call
        return Ranked(shortlist.user_ids, shortlist.scores, shortlist.reasons, shortlist.mutual_counts, None,
                      counts)

    def shortlist_for_ranker(self, row: int, results: list[SourceResult],
                             counts: dict[str, int] | None = None) -> tuple[Candidates, Candidates]:
        """Steps 2-3b: the merged candidates the pre-rank filters keep,
        split into (the ones the ranker sees, the ones the pre-rank cut),
        each in row order; the cut ones carry their pre-rank position
        (1-based) as the feature ``PRE_RANK_POSITION``. Adds to ``counts``."""
        counts = {} if counts is None else counts
        candidates = Candidates.merge(results)
        for step in self.pre_rank_filters:
            rejected = step(row, candidates)
            if rejected.any():
                counts[f"filter.{step.reason.name.lower()}"] = int(rejected.sum())
                candidates = candidates.select(~rejected)
        keep = None if self.pre_rank is None else self.pre_rank.keep
        if self.pre_rank is None or keep is None or len(candidates) <= keep:
            return candidates, candidates.select(np.zeros(len(candidates), bool))
        order = self.pre_rank(row, candidates, self.surface)
        position = np.empty(len(candidates), np.float64)
        position[order] = np.arange(1, len(candidates) + 1)
        kept = np.zeros(len(candidates), bool)
        kept[order[:keep]] = True
        counts["pre_rank.cut"] = int((~kept).sum())
        cut = candidates.select(~kept)
        cut.features[PRE_RANK_POSITION] = position[~kept]
        return candidates.select(kept), cut

    def finish(self, viewer_id: int, page_ids: list[int], reasons: list[list[SuggestionReason]],
               now: float) -> None:
        """The post steps, once a page has been answered."""
        for step in self.post:
            step(viewer_id, page_ids, reasons, now)

    def pre_rank_reasons(self, viewer_row: int, candidate_row: int) -> list[FilterReason]:
        """The reasons the pre-rank filters would remove one candidate for."""
        one = Candidates(np.array([candidate_row], np.int32))
        return [step.reason for step in self.pre_rank_filters if bool(step(viewer_row, one)[0])]
