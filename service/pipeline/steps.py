"""The step types a suggestion flow is made of (see ``flow.Flow``).

Each step has one job and a stable ``name`` (it labels the step's counters
and ExplainSuggestion's output). Steps are vectorised over the candidates:
arrays in, arrays out, never one Python call per candidate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from graph.model import Surface
from service.pipeline.candidates import Candidates, SourceResult
from service.pipeline.reasons import FilterReason, SuggestionReason
from service.safety.engine import Viewer


class CandidateSource(Protocol):
    """Finds candidates for a viewer: rows (int32) with a score each."""

    # Read-only: the steps are frozen dataclasses.
    @property
    def name(self) -> str: ...

    def __call__(self, viewer_row: int, now: float) -> SourceResult: ...


class PreRankFilter(Protocol):
    """Removes candidates before ranking, for a reason that is not safety
    (safety runs after ranking, in "filter and take")."""

    # Read-only: the steps are frozen dataclasses.
    @property
    def name(self) -> str: ...

    @property
    def reason(self) -> FilterReason: ...

    def __call__(self, viewer_row: int, candidates: Candidates) -> np.ndarray:
        """bool per candidate: True removes it."""
        ...


class PreRanker(Protocol):
    """Orders the candidates cheaply after the pre-rank filters so that at
    most ``keep`` go on to the ranker (None: all of them). Runs before
    safety, which still filters whatever survives."""

    # Read-only: the steps are frozen dataclasses.
    @property
    def name(self) -> str: ...

    @property
    def keep(self) -> int | None: ...

    def __call__(self, viewer_row: int, candidates: Candidates, surface: Surface) -> np.ndarray:
        """Candidate indices (int64), best first; the flow keeps the head."""
        ...


@dataclass
class Shortlist:
    """What the safety step kept, best first, as the transforms see it.

    ``rows``: int32 rows of the kept candidates; ``user_ids``: their external
    ids (int64); ``scores``: the ranker's (float64); ``found_by``: per source
    name, bool per kept candidate; ``results``: every source's full answer,
    by source name. Transforms fill ``mutual_counts`` (int64 per candidate)
    and ``reasons`` (one list per candidate)."""

    viewer_row: int
    facts: Viewer
    rows: np.ndarray
    user_ids: np.ndarray
    scores: np.ndarray
    found_by: dict[str, np.ndarray]
    results: dict[str, SourceResult]
    now: float
    mutual_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reasons: list[list[SuggestionReason]] = field(default_factory=list)


class Transform(Protocol):
    """Adds to the shortlist after safety (social proof: mutual counts,
    reasons); never adds or removes candidates."""

    # Read-only: the steps are frozen dataclasses.
    @property
    def name(self) -> str: ...

    def __call__(self, shortlist: Shortlist) -> None: ...


class PostStep(Protocol):
    """Runs once a page has been cut and answered (e.g. impressions)."""

    # Read-only: the steps are frozen dataclasses.
    @property
    def name(self) -> str: ...

    def __call__(self, viewer_id: int, page_ids: list[int], reasons: list[list[SuggestionReason]],
                 now: float) -> None: ...
