"""Property tests (hypothesis) over random graphs, profiles, guardian
controls, impressions and event sequences: no suggestion that
``Pipeline.suggest`` returns ever violates a rule, as judged by the
independent oracle in ``safety_oracle`` (written from the rule text, never
calling the engine).

The pipeline's embedding search finds every user, so every user reaches
the safety filters; plans are biased towards well-formed active users so
that many pairs are allowed and each rule gets to refuse some."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, note, settings

from graph.model import Surface
from tests.support.safety_oracle import Harness, build, world_plans

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def violations(plan: dict[str, Any], surface: Surface) -> list[tuple[int, int]]:
    h = build(plan)
    pipeline = h.pipeline()
    bad = []
    for v in [*range(1, plan["n"] + 1), plan["n"] + 50]:
        ranked = pipeline.suggest(v, surface, h.now)
        if not h.world.viewer_may_receive(v):
            assert ranked.user_ids.shape[0] == 0 and ranked.ineligible is not None, f"viewer {v}"
        bad += [(v, int(c)) for c in ranked.user_ids.tolist() if not h.world.may_suggest(v, int(c))]
    return bad


class TestNoSuggestionViolatesARule:
    @PROPERTY
    @given(world_plans())
    def test_new_contacts(self, plan: dict[str, Any]) -> None:
        """Every NEW_CONTACTS suggestion is one the oracle allows; viewers the
        oracle says may not receive suggestions get an empty, explained
        answer."""
        assert violations(plan, Surface.NEW_CONTACTS) == []

    @PROPERTY
    @given(world_plans())
    def test_share_sheet(self, plan: dict[str, Any]) -> None:
        """The share sheet (which also draws on existing contacts) obeys the
        same rules."""
        assert violations(plan, Surface.SHARE_SHEET) == []


def agree(h: Harness, v: int) -> None:
    """The engine keeps exactly the candidates the oracle allows for ``v``
    (viewer eligibility included), and the pipeline returns none other."""
    rows = np.arange(h.store.n_rows, dtype=np.int32)
    ids = h.store.ids.ext(rows).tolist()
    row = h.row(v)
    eligible = row >= 0 and h.engine.viewer_ineligibility(h.store, row) is None
    assert eligible == h.world.viewer_may_receive(v), f"viewer {v} at {h.now}"
    if not eligible:
        return
    verdict = h.engine.filter_suggestions(h.store, row, rows, h.now)
    for c, keep, reason in zip(ids, verdict.keep.tolist(), verdict.first_reason, strict=True):
        note(f"viewer {v} candidate {c} at {h.now}: engine keep={keep} reason={reason}")
        assert keep == h.world.may_suggest(v, c), (v, c, reason)
    for c in h.suggest(v).user_ids.tolist():
        assert h.world.may_suggest(v, int(c)), (v, c)


class TestFilterAgreesWithOracle:
    @PROPERTY
    @given(world_plans())
    def test_every_pair(self, plan: dict[str, Any]) -> None:
        """For every (viewer, candidate) pair the engine keeps exactly the
        candidates the oracle allows: neither unsafe suggestions nor rules
        that remove more than the text says."""
        h = build(plan)
        for v in range(1, plan["n"] + 1):
            agree(h, v)

    @PROPERTY
    @given(world_plans())
    def test_mid_sequence(self, plan: dict[str, Any]) -> None:
        """The same at every "check" step in the middle of the event
        sequence, so that state the engine caches (guardian controls, the
        impression memory) is read between changes."""
        build(plan, on_check=agree)
