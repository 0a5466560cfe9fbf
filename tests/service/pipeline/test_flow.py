"""Flows as data: a step added through a flow is run by SuggestContacts'
pipeline and by ExplainSuggestion, and safety still has the last word."""

from __future__ import annotations

import dataclasses

import numpy as np

from graph.model import Surface
from service.pipeline.candidates import Candidates, SourceResult
from service.pipeline.explain import explain
from service.pipeline.flow import Flow
from service.pipeline.pipeline import Pipeline
from service.pipeline.pre_rank import PRE_RANK_CAP, LinearPreRank
from service.pipeline.ranker import LinearRanker
from service.pipeline.reasons import FilterReason, SuggestionReason
from service.pipeline.steps import CandidateSource, Shortlist
from tests.support.safety_oracle import Harness


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A toy candidate source: always the same users, score 1."""

    rows: tuple[int, ...]
    name: str = "fixed"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows = np.array(self.rows, np.int32)
        return SourceResult(self.name, SuggestionReason.SIMILAR_NETWORK, rows, np.ones(rows.shape[0]))


def _with_source(flow: Flow, source: CandidateSource) -> Flow:
    return dataclasses.replace(flow, sources=(*flow.sources, source))


def _world() -> Harness:
    """Adults 1..5; 1 and 2 are friends; 1 blocked 4; nobody else is linked."""
    h = Harness()
    for u in range(1, 6):
        h.profile(u)
    h.befriend(1, 2)
    h.block(1, 4)
    return h


class TestDeclaredFlow:
    def test_a_toy_source_added_to_a_flow_is_suggested_with_its_reason(self) -> None:
        """Users the toy source finds come back from suggest with its reason,
        and only the surface whose flow lists it runs it."""
        h = _world()
        pipeline = h.pipeline()
        toy = Fixed((h.row(3), h.row(5)))
        pipeline.flows[Surface.NEW_CONTACTS] = _with_source(pipeline.flows[Surface.NEW_CONTACTS], toy)
        ranked = pipeline.suggest(1, Surface.NEW_CONTACTS, h.now)
        got = dict(zip(ranked.user_ids.tolist(), ranked.reasons, strict=True))
        assert {3, 5} <= set(got)
        assert got[3] == [SuggestionReason.SIMILAR_NETWORK]
        assert ranked.counts["source.fixed"] == 2
        assert "source.fixed" not in pipeline.suggest(1, Surface.SHARE_SHEET, h.now).counts

    def test_safety_filters_what_a_toy_source_finds(self) -> None:
        """A source cannot get a blocked user or the viewer past safety."""
        h = _world()
        pipeline = h.pipeline()
        toy = Fixed((h.row(1), h.row(4), h.row(5)))
        pipeline.flows[Surface.NEW_CONTACTS] = _with_source(pipeline.flows[Surface.NEW_CONTACTS], toy)
        ids = pipeline.suggest(1, Surface.NEW_CONTACTS, h.now).user_ids.tolist()
        assert 5 in ids and 4 not in ids and 1 not in ids

    def test_explain_runs_the_same_flow(self) -> None:
        """ExplainSuggestion lists the toy source and the rank it gave."""
        h = _world()
        pipeline = h.pipeline()
        toy = Fixed((h.row(5),))
        pipeline.flows[Surface.NEW_CONTACTS] = _with_source(pipeline.flows[Surface.NEW_CONTACTS], toy)
        found = explain(pipeline, 1, 5, Surface.NEW_CONTACTS, h.now)
        assert found.sources["fixed"] == 1.0
        assert found.rank >= 1 and not found.filter_reasons
        blocked = explain(pipeline, 1, 4, Surface.NEW_CONTACTS, h.now)
        assert FilterReason.BLOCKED in blocked.filter_reasons and blocked.rank == 0

    def test_pre_rank_filter_removes_existing_contacts_on_new_contacts_only(self) -> None:
        """The existing-contact filter is listed in NEW_CONTACTS' flow only,
        and explain reports it from that same step."""
        h = _world()
        h.message(1, 3)
        pipeline = h.pipeline()
        toy = Fixed((h.row(3),))
        for surface in (Surface.NEW_CONTACTS, Surface.SHARE_SHEET):
            pipeline.flows[surface] = _with_source(pipeline.flows[surface], toy)
        assert 3 not in pipeline.suggest(1, Surface.NEW_CONTACTS, h.now).user_ids.tolist()
        assert 3 in pipeline.suggest(1, Surface.SHARE_SHEET, h.now).user_ids.tolist()
        assert FilterReason.EXISTING_CONTACT in explain(pipeline, 1, 3, Surface.NEW_CONTACTS, h.now).filter_reasons
        assert FilterReason.EXISTING_CONTACT not in explain(pipeline, 1, 3, Surface.SHARE_SHEET, h.now).filter_reasons

    def test_transforms_run_in_the_order_listed(self) -> None:
        """A transform listed after the built-in ones sees their output."""
        h = _world()
        pipeline = h.pipeline()
        seen: list[int] = []

        @dataclasses.dataclass(frozen=True)
        class Spy:
            name: str = "spy"

            def __call__(self, shortlist: Shortlist) -> None:
                seen.append(len(shortlist.reasons))

        flow = pipeline.flows[Surface.NEW_CONTACTS]
        pipeline.flows[Surface.NEW_CONTACTS] = dataclasses.replace(
            _with_source(flow, Fixed((h.row(5),))), transforms=(*flow.transforms, Spy()))
        ranked = pipeline.suggest(1, Surface.NEW_CONTACTS, h.now)
        assert seen == [len(ranked.user_ids)] and seen[0] >= 1


@dataclasses.dataclass(frozen=True)
class Scored:
    """A toy source under a name the linear blend weighs (``embedding``)."""

    scores: tuple[tuple[int, float], ...]
    name: str = "embedding"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows = np.array([r for r, _ in self.scores], np.int32)
        order = np.argsort(rows)
        return SourceResult(self.name, SuggestionReason.SIMILAR_NETWORK, rows[order],
                            np.array([s for _, s in self.scores])[order])


@dataclasses.dataclass(frozen=True)
class SpyRanker:
    """The linear ranker, recording how many candidates it was given."""

    seen: list[int]
    name: str = "spy"

    def rank_scores(self, viewer_row: int, candidates: Candidates, surface: Surface, now: float) -> np.ndarray:
        self.seen.append(len(candidates))
        return LinearRanker().scores(candidates, surface)

    @staticmethod
    def order(scores: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
        return LinearRanker.order(scores, user_ids)


class TestPreRankCap:
    def _pipeline(self, h: Harness, keep: int | None, seen: list[int]) -> Pipeline:
        pipeline = h.pipeline()
        flow = pipeline.flows[Surface.NEW_CONTACTS]
        toy = Scored(((h.row(3), 0.9), (h.row(5), 0.1)))
        pipeline.flows[Surface.NEW_CONTACTS] = dataclasses.replace(
            flow, sources=(toy,), ranker=SpyRanker(seen), pre_rank=LinearPreRank(keep))
        return pipeline

    def test_the_ranker_sees_at_most_keep_candidates(self) -> None:
        """keep=1: the ranker scores one candidate, the pre-rank's best; the
        cut one is counted and not suggested."""
        h = _world()
        seen: list[int] = []
        ranked = self._pipeline(h, 1, seen).suggest(1, Surface.NEW_CONTACTS, h.now)
        assert seen == [1]
        assert ranked.user_ids.tolist() == [3]
        assert ranked.counts["pre_rank.cut"] == 1

    def test_no_cap_passes_everything(self) -> None:
        h = _world()
        seen: list[int] = []
        ranked = self._pipeline(h, None, seen).suggest(1, Surface.NEW_CONTACTS, h.now)
        assert seen == [2] and sorted(ranked.user_ids.tolist()) == [3, 5]
        assert "pre_rank.cut" not in ranked.counts

    def test_safety_still_filters_what_the_pre_rank_keeps(self) -> None:
        """The pre-rank's best is a blocked user: safety removes it after."""
        h = _world()
        pipeline = h.pipeline()
        flow = pipeline.flows[Surface.NEW_CONTACTS]
        toy = Scored(((h.row(4), 0.9), (h.row(5), 0.1)))
        pipeline.flows[Surface.NEW_CONTACTS] = dataclasses.replace(flow, sources=(toy,), pre_rank=LinearPreRank(1))
        ranked = pipeline.suggest(1, Surface.NEW_CONTACTS, h.now)
        assert ranked.user_ids.tolist() == []
        assert ranked.counts["filter.blocked"] == 1

    def test_explain_names_the_cap_that_cut(self) -> None:
        """The cut candidate's explanation carries cap.pre_rank with the
        place the pre-rank gave it; the kept one's does not."""
        h = _world()
        pipeline = self._pipeline(h, 1, [])
        cut = explain(pipeline, 1, 5, Surface.NEW_CONTACTS, h.now)
        assert cut.sources[PRE_RANK_CAP] == 2.0 and cut.rank == 0
        kept = explain(pipeline, 1, 3, Surface.NEW_CONTACTS, h.now)
        assert PRE_RANK_CAP not in kept.sources and kept.rank == 1
