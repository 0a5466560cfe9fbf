"""Friends in common count only friends the viewer may be told of (issue 20,
item 5): a mutual friend who is a hidden minor, under the DM age, banned,
erased, not discoverable, or blocked either way is neither counted nor named
(MUTUAL_FRIENDS) on any surface, in ExplainSuggestion, or in GetRelationship
for an untrusted caller.

The world of every case: adults V (viewer), T (candidate) and W (a visible
friend of both); H, the case's extra friend of both, set up as the case says."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from graph.model import Surface
from service.pipeline.explain import explain
from service.pipeline.reasons import SuggestionReason
from tests.support.rpc import serve_time_stamp
from tests.support.safety_oracle import Harness, build, world_plans

V, T, W, H = 1, 2, 3, 4
SURFACES = (Surface.NEW_CONTACTS, Surface.SHARE_SHEET)


def _erase(h: Harness, uid: int) -> None:
    from graph.model import Event, EventKind

    h.store.apply_batch([Event(f"erase-{uid}", h.now, EventKind.ERASE_USER, uid)])


@dataclass(frozen=True)
class Case:
    name: str
    # Sets up H (and whatever else the case needs) after the base world.
    setup: Callable[[Harness], None]
    # T's friends in common with V that V may be told of.
    want: int


def _profile(**kw: Any) -> Callable[[Harness], None]:
    def setup(h: Harness) -> None:
        h.profile(H, **kw)
        h.befriend(V, H)
        h.befriend(T, H)
    return setup


def _then(first: Callable[[Harness], None], then: Callable[[Harness], None]) -> Callable[[Harness], None]:
    def setup(h: Harness) -> None:
        first(h)
        then(h)
    return setup


CASES = (
    Case("visible adult counts", _profile(), 2),
    Case("discoverable adult counts", _profile(discoverable=True), 2),
    Case("13_15 not discoverable (the issue's M)", _profile(age_band="13_15"), 1),
    Case("13_15 discoverable: under the DM age", _profile(age_band="13_15", discoverable=True), 1),
    Case("under 13", _profile(age_band="UNDER_13", discoverable=True), 1),
    Case("16_17 not discoverable", _profile(age_band="16_17"), 1),
    Case("16_17 discoverable: a minor, hidden from an adult stranger",
         _profile(age_band="16_17", discoverable=True), 1),
    Case("adult who once declared 13_15 (weak assurance)",
         _then(_profile(age_band="13_15", discoverable=True), lambda h: h.update(H, age_band="ADULT")), 1),
    Case("no age band", _profile(age_band=None, discoverable=True), 1),
    Case("banned", _profile(state="BANNED"), 1),
    Case("suspended", _profile(state="SUSPENDED"), 1),
    Case("deactivated", _profile(state="DEACTIVATED"), 1),
    Case("no account state", _profile(state=None), 1),
    Case("no profile at all", lambda h: (h.befriend(V, H), h.befriend(T, H)), 1),  # type: ignore[func-returns-value]
    Case("adult not discoverable", _profile(discoverable=False), 1),
    Case("erased", _then(_profile(), lambda h: _erase(h, H)), 1),
    Case("blocked by the viewer", _then(_profile(), lambda h: h.block(V, H)), 1),
    Case("blocked the viewer", _then(_profile(), lambda h: h.block(H, V)), 1),
    Case("NO_ONE message privacy still counts (messaging, not discovery)", _profile(privacy="NO_ONE"), 2),
    Case("muted by the viewer still counts (the viewer's own history)",
         _then(_profile(), lambda h: h.mute(V, H)), 2),
)


def _world(case: Case) -> Harness:
    h = Harness()
    for u in (V, T, W):
        h.profile(u)
    h.befriend(V, W)
    h.befriend(T, W)
    case.setup(h)
    return h


def _suggestion(h: Harness, surface: Surface) -> tuple[int, list[SuggestionReason]]:
    ranked = h.suggest(V, surface)
    where = np.flatnonzero(ranked.user_ids == T)
    assert where.shape[0], f"T is not suggested on {surface.name}"
    i = int(where[0])
    return int(ranked.mutual_counts[i]), list(ranked.reasons[i])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
class TestHiddenMutuals:
    def test_suggestion_counts_and_reasons(self, case: Case) -> None:
        """On both surfaces, T's mutual-friend count is the visible friends in
        common only, and MUTUAL_FRIENDS is named (there is always W)."""
        h = _world(case)
        for surface in SURFACES:
            count, reasons = _suggestion(h, surface)
            assert count == case.want, surface.name
            assert SuggestionReason.MUTUAL_FRIENDS in reasons

    def test_explain_and_engine_agree(self, case: Case) -> None:
        """ExplainSuggestion's friends-of-friends score and the engine's
        pair count say the same number; the oracle agrees."""
        h = _world(case)
        for surface in SURFACES:
            found = explain(h.pipeline(), V, T, surface, h.now)
            assert found.sources.get("friends_of_friends") == case.want
        assert h.engine.nameable_mutual_count(h.store, h.row(V), h.row(T), h.now) == case.want
        if case.name != "erased":  # the oracle's world has no erasure
            assert len(h.world.nameable_mutuals(V, T)) == case.want

    def test_only_hidden_mutuals_name_no_reason(self, case: Case) -> None:
        """Without W, T found only through H shows H's count alone: 0 and no
        MUTUAL_FRIENDS reason when H is hidden, and no friends-of-friends
        entry in ExplainSuggestion."""
        h = _world(case)
        h.unfollow(T, W)
        want = case.want - 1
        for surface in SURFACES:
            count, reasons = _suggestion(h, surface)
            assert count == want
            assert (SuggestionReason.MUTUAL_FRIENDS in reasons) == (want > 0)
            found = explain(h.pipeline(), V, T, surface, h.now)
            assert found.sources.get("friends_of_friends") == (want or None)


class TestTheIssuesScenario:
    def test_a_stranger_befriending_a_hidden_minor_changes_nothing(self) -> None:
        """V and T share W; V is friends with M (13_15, not discoverable): T
        shows 1. T and M become friends: T still shows 1. An under-13 and a
        banned friend in common change nothing either."""
        h = Harness()
        for u in (V, T, W):
            h.profile(u)
        h.profile(10, age_band="13_15")
        h.profile(11, age_band="UNDER_13")
        h.profile(12, state="BANNED")
        for a, b in ((V, W), (T, W), (V, 10), (V, 11), (V, 12)):
            h.befriend(a, b)
        assert _suggestion(h, Surface.NEW_CONTACTS)[0] == 1
        for m in (10, 11, 12):
            h.befriend(T, m)
            assert _suggestion(h, Surface.NEW_CONTACTS)[0] == 1

    def test_minor_viewer_is_told_of_adults_and_discoverable_minors(self) -> None:
        """A 16_17 viewer and a 16_17 candidate who followed first: an adult
        and a discoverable 16_17 friend in common count; a 13_15 and a
        16_17 who is not discoverable do not."""
        h = Harness()
        h.profile(V, age_band="16_17")
        h.profile(T, age_band="16_17", discoverable=True)
        h.profile(W, age_band="16_17", discoverable=True)
        h.profile(H)
        h.profile(10, age_band="13_15", discoverable=True)
        h.profile(11, age_band="16_17")
        h.follow(T, V)
        for m in (W, H, 10, 11):
            h.befriend(V, m)
            h.befriend(T, m)
        assert _suggestion(h, Surface.NEW_CONTACTS)[0] == 2
        assert h.engine.nameable_mutual_count(h.store, h.row(V), h.row(T), h.now) == 2
        assert h.world.nameable_mutuals(V, T) == {W, H}

    def test_viewer_who_may_not_message_is_told_of_no_one(self) -> None:
        """A banned or 13_15 actor is told of no friend in common (the
        relationship read, where anyone may be the actor)."""
        for viewer in ({"state": "BANNED"}, {"age_band": "13_15"}):
            h = Harness()
            h.profile(V, **viewer)
            h.profile(T)
            h.profile(W)
            h.befriend(V, W)
            h.befriend(T, W)
            assert h.engine.nameable_mutual_count(h.store, h.row(V), h.row(T), h.now) == 0


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestAgainstTheOracle:
    @PROPERTY
    @given(world_plans())
    def test_counts_are_the_oracles_nameable_mutuals(self, plan: dict[str, Any]) -> None:
        """In random worlds, every suggestion's mutual-friend count, and the
        engine's pair count for every pair, is the number of friends in
        common the oracle says the viewer may be told of; MUTUAL_FRIENDS is
        named only with a count above 0."""
        h = build(plan)
        users = range(1, plan["n"] + 1)
        for v in users:
            for surface in SURFACES:
                ranked = h.suggest(v, surface)
                shown = zip(ranked.user_ids.tolist(), ranked.mutual_counts.tolist(), ranked.reasons, strict=True)
                for u, n, reasons in shown:
                    assert n == len(h.world.nameable_mutuals(v, u)), (v, u)
                    if n == 0:
                        assert SuggestionReason.MUTUAL_FRIENDS not in reasons
            for c in users:
                if v != c and h.row(v) >= 0 and h.row(c) >= 0:
                    got = h.engine.nameable_mutual_count(h.store, h.row(v), h.row(c), h.now)
                    assert got == len(h.world.nameable_mutuals(v, c)), (v, c)


# --- over gRPC ---------------------------------------------------------------------------


def _grpc_events(*pairs: tuple[int, int], profiles: dict[int, dict[str, Any]] | None = None) -> Any:
    from contactgraph.v1 import graph_events_pb2 as ev
    from contactgraph.v1 import graph_service_pb2
    from contactgraph.v1 import user_profile_pb2 as pb

    events = []
    n = iter(range(10**6))
    for uid, fields in (profiles or {}).items():
        base: dict[str, Any] = {"age_band": pb.AGE_BAND_ADULT, "message_privacy": pb.MESSAGE_PRIVACY_EVERYONE,
                                "account_state": pb.ACCOUNT_STATE_ACTIVE}
        base.update(fields)
        events.append(ev.GraphEvent(event_id=f"mp-p{uid}-{next(n)}", event_time=serve_time_stamp(),
                                    profile=pb.UserProfile(user_id=uid, **base)))
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            events.append(ev.GraphEvent(event_id=f"mp-f{x}-{y}", event_time=serve_time_stamp(),
                                        follow=ev.Edge(actor_id=x, target_id=y)))
    return graph_service_pb2.ApplyEventsRequest(events=events)


# Fresh ids, away from the tiny network's: adults V, T, W; M 13_15 (not
# discoverable), U under 13, B banned, each a friend of V and T.
GV, GT, GW, GM, GU, GB = 9001, 9002, 9003, 9004, 9005, 9006


def _hidden_world() -> tuple[Any, Any]:
    from contactgraph.v1 import user_profile_pb2 as pb

    profiles = {GV: {}, GT: {}, GW: {}, GM: {"age_band": pb.AGE_BAND_13_15},
                GU: {"age_band": pb.AGE_BAND_UNDER_13, "discoverable": True},
                GB: {"account_state": pb.ACCOUNT_STATE_BANNED}}
    first = _grpc_events((GV, GW), (GT, GW), (GV, GM), (GV, GU), (GV, GB), profiles=profiles)
    then = _grpc_events((GT, GM), (GT, GU), (GT, GB))
    return first, then


@pytest.mark.integration
class TestOverGrpc:
    def test_suggestions_explain_and_relationship(self, fresh_channel: Any) -> None:
        """The issue's scenario against a real server: T shows 1 friend in
        common before and after T befriends V's hidden friends (13_15, under
        13, banned), on both surfaces, in ExplainSuggestion and in
        GetRelationship (plaintext: no verified caller, so untrusted)."""
        from contactgraph.v1 import (
            graph_service_pb2,
            graph_service_pb2_grpc,
            suggestion_service_pb2_grpc,
        )
        from contactgraph.v1 import suggestion_service_pb2 as spb

        graph = graph_service_pb2_grpc.GraphServiceStub(fresh_channel)
        suggestions = suggestion_service_pb2_grpc.SuggestionServiceStub(fresh_channel)
        first, then = _hidden_world()

        def seen() -> list[tuple[int, list[int]]]:
            out = []
            for surface in (1, 2):
                page = suggestions.SuggestContacts(spb.SuggestContactsRequest(user_id=GV, page_size=100,
                                                                              surface=surface), timeout=10)
                got = [s for s in page.suggestions if s.user_id == GT]
                assert got, surface
                out.append((got[0].mutual_friend_count, list(got[0].reasons)))
            return out

        graph.ApplyEvents(first, timeout=10)
        before = seen()
        graph.ApplyEvents(then, timeout=10)
        assert seen() == before == [(1, before[0][1]), (1, before[1][1])]
        assert all(spb.SUGGESTION_REASON_MUTUAL_FRIENDS in reasons for _, reasons in before)
        explained = suggestions.ExplainSuggestion(spb.ExplainSuggestionRequest(viewer_id=GV, candidate_id=GT),
                                                  timeout=10)
        assert {s.source: s.score for s in explained.sources}.get("friends_of_friends") == 1
        relationship = graph.GetRelationship(graph_service_pb2.GetRelationshipRequest(actor_id=GV, target_id=GT),
                                             timeout=10)
        assert relationship.mutual_friend_count == 1
