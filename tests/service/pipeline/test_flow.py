"""Flows as data: a step added through a flow is run by SuggestContacts'
pipeline and by ExplainSuggestion, and safety still has the last word."""

from __future__ import annotations

import dataclasses

import numpy as np

from graph.model import Surface
from service.pipeline.candidates import SourceResult
from service.pipeline.explain import explain
from service.pipeline.flow import Flow
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
