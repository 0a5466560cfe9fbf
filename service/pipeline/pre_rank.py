"""The cheap pre-rank (a ranking stage, beside ``ranker.py``): the linear blend of the sources' scores orders the
merged candidates and at most ``keep`` of them go on to the ranker (the
learned one scores trees over ~30 features per candidate; this is a few
vector operations). Candidates it cuts are never scored by the ranker and
never reach the safety step; ExplainSuggestion names the cut
(``cap.pre_rank``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graph.bounds import Bounds
from graph.model import Surface
from service.pipeline.candidates import Candidates
from service.pipeline.ranker import LinearRanker

PRE_RANK_CAP = "cap.pre_rank"


@dataclass(frozen=True)
class LinearPreRank:
    keep: int | None = Bounds.pre_rank_keep  # None: keep all (no cut)
    blend: LinearRanker = field(default_factory=LinearRanker)
    name: str = "pre_rank"

    def __call__(self, viewer_row: int, candidates: Candidates, surface: Surface) -> np.ndarray:
        """Candidate indices (int64), best first by the blend; ties to the
        lower row. On the share sheet the blend puts existing contacts
        first, so they are the last to be cut."""
        scores = self.blend.scores(candidates, surface)
        order: np.ndarray = np.lexsort((candidates.rows, -scores))
        return order
