"""The real server on a free loopback port, called through a real channel:
suggestions, page walks and tokens, input validation, live events, health,
reflection, a busy port and the command line (issue 2's contract)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from contactgraph.v1 import (
    filter_reason_pb2,
    suggestion_service_pb2,
    surface_pb2,
)
from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import user_profile_pb2 as profile_pb
from graph.clock import ManualClock
from graph.model import AccountState, AgeAssurance, AgeBand, MessagePrivacy, encode_region
from graph.rebuild import rebuild
from service.server.config import ServerConfig
from service.server.server import SERVICE_NAMES, PortInUse, create_server
from service.server.state import ServingState
from tests.support.grpc_errors import expect_already_exists, expect_invalid, invalid_argument
from tests.support.rpc import apply, edge, erase, ids, message, profile, serve_time_stamp, suggest
from tests.support.server import CONTACTGRAPH, REPO, ServerProcess

if TYPE_CHECKING:
    from tests.conftest import TinyNetwork
    from tests.support.server import RunningServer

pytestmark = pytest.mark.integration

NEW = surface_pb2.Surface.Value("SURFACE_NEW_CONTACTS")
SHARE = surface_pb2.Surface.Value("SURFACE_SHARE_SHEET")
UNSPECIFIED = 0
R = suggestion_service_pb2.SuggestionReason
FR = filter_reason_pb2.FilterReason


# --- helpers ---------------------------------------------------------------


def walk(channel: grpc.Channel, user_id: int, page_size: int,
         surface: int = NEW) -> list[suggestion_service_pb2.SuggestContactsResponse]:
    pages = [suggest(channel, user_id, page_size=page_size, surface=surface)]
    while pages[-1].next_page_token:
        assert len(pages) < 50, "the walk does not end"
        pages.append(suggest(channel, user_id, page_size=page_size, page_token=pages[-1].next_page_token,
                             surface=surface))
    return pages


def alter(token: str, at: int) -> str:
    """The token with one base64 character at ``at`` changed."""
    swapped = "A" if token[at] != "A" else "B"
    return token[:at] + swapped + token[at + 1:]


# --- SuggestContacts -----------------------------------------------------------


class TestSuggestContacts:
    def test_suggests_exactly_the_safe_users_with_reasons_and_mutual_counts(
            self, channel: grpc.Channel, tiny_network: TinyNetwork) -> None:
        """The viewer gets exactly the users every rule allows, each with the
        reasons of the sources that found it and its exact mutual-friend
        count: friends of friends carry MUTUAL_FRIENDS, a one-way follower
        FOLLOWS_YOU, an unanswered sender MESSAGED_YOU."""
        net = tiny_network
        response = suggest(channel, net.viewer)
        got = {s.user_id: s for s in response.suggestions}
        assert len(got) == len(response.suggestions), "a user appears twice"
        assert set(got) == set(net.safe_for_viewer)
        for uid, mutual in net.safe_for_viewer.items():
            s = got[uid]
            assert s.mutual_friend_count == mutual, uid
            assert (R.Value("SUGGESTION_REASON_MUTUAL_FRIENDS") in s.reasons) == (mutual > 0), uid
            assert s.reasons, f"{uid} has no reason"
        assert R.Value("SUGGESTION_REASON_FOLLOWS_YOU") in got[13].reasons
        assert R.Value("SUGGESTION_REASON_MESSAGED_YOU") in got[14].reasons
        assert not response.next_page_token
        assert response.ineligible_reason == 0

    def test_orders_by_score_then_user_id(self, channel: grpc.Channel, tiny_network: TinyNetwork) -> None:
        """Suggestions come best first; equal scores are ordered by user id."""
        s = suggest(channel, tiny_network.viewer).suggestions
        keys = [(-x.score, x.user_id) for x in s]
        assert keys == sorted(keys)

    def test_answer_names_the_snapshot_and_policy(self, channel: grpc.Channel, server: RunningServer) -> None:
        """Every answer says which snapshot and policy produced it."""
        response = suggest(channel, 1)
        assert response.snapshot_id == server.server.state.snapshot_id
        assert response.snapshot_id.startswith("snap-")
        assert response.policy_version == "test-contract-1"

    def test_never_suggests_unsafe_users_to_the_viewer(self, channel: grpc.Channel,
                                                       tiny_network: TinyNetwork) -> None:
        """Blocked (either way), under-16, unknown-age, not active, NO_ONE or
        unset privacy, FRIENDS privacy to a stranger, not discoverable and
        profile-less users never reach the viewer, on either surface, though
        every one of them is a friend of the viewer's friends."""
        net = tiny_network
        for surface in (NEW, SHARE):
            shown = set(ids(suggest(channel, net.viewer, surface=surface)))
            leaked = {u: why for u, why in net.unsafe_for_viewer.items() if u in shown}
            assert not leaked, f"surface {surface}: {leaked}"

    def test_nobody_is_ever_shown_a_user_no_one_may_be_shown(self, channel: grpc.Channel,
                                                             tiny_network: TinyNetwork) -> None:
        """Across every viewer of the network and both surfaces, users who
        may never be suggested (under 16, unknown age, not active, NO_ONE or
        unset privacy, no profile) never appear, nobody is shown themself, and
        the blocked pairs never see each other."""
        never = {20, 21, 22, 23, 24, 31, 32, 34, 40, 45, 50}
        blocked_pairs = {(1, 42), (42, 1), (1, 43), (43, 1)}
        for viewer in tiny_network.all_users:
            for surface in (NEW, SHARE):
                shown = ids(suggest(channel, viewer, surface=surface))
                assert not never & set(shown), (viewer, surface, shown)
                assert viewer not in shown
                assert not {(viewer, u) for u in shown} & blocked_pairs, (viewer, shown)
                assert len(shown) == len(set(shown))

    def test_minor_sees_only_a_discoverable_minor(self, channel: grpc.Channel,
                                                  tiny_network: TinyNetwork) -> None:
        """A 16-17 viewer is shown no adult stranger: only the other
        discoverable 16-17 friend of a friend."""
        net = tiny_network
        response = suggest(channel, net.minor_viewer)
        assert ids(response) == list(net.safe_for_minor_viewer)
        assert response.suggestions[0].mutual_friend_count == 1
        assert R.Value("SUGGESTION_REASON_FOLLOWS_YOU") in response.suggestions[0].reasons

    def test_share_sheet_puts_existing_contacts_first(self, channel: grpc.Channel,
                                                      tiny_network: TinyNetwork) -> None:
        """On the share sheet the viewer's conversations come first (people
        the viewer messaged, marked RECENT_CONTACT, and people who messaged
        the viewer), the most frequent first; the new contacts follow."""
        net = tiny_network
        response = suggest(channel, net.viewer, surface=SHARE)
        got = ids(response)
        conversations = set(net.viewer_friends) | set(net.messaged_viewer)
        assert set(got[: len(conversations)]) == conversations
        assert got[0] == net.viewer_friends[0]
        for s in response.suggestions:
            if s.user_id in net.viewer_friends:
                assert R.Value("SUGGESTION_REASON_RECENT_CONTACT") in s.reasons
        assert set(got[len(conversations):]) == set(net.safe_for_viewer) - conversations

    def test_unspecified_surface_means_new_contacts(self, channel: grpc.Channel,
                                                    tiny_network: TinyNetwork) -> None:
        """SURFACE_UNSPECIFIED answers exactly as SURFACE_NEW_CONTACTS."""
        a = suggest(channel, tiny_network.viewer, surface=UNSPECIFIED)
        b = suggest(channel, tiny_network.viewer, surface=NEW)
        assert ids(a) == ids(b)
        assert [s.mutual_friend_count for s in a.suggestions] == [s.mutual_friend_count for s in b.suggestions]

    def test_unknown_user_gets_an_explained_empty_answer(self, channel: grpc.Channel) -> None:
        """An unknown user is not an error: an empty page whose
        ineligible_reason is VIEWER_MISSING_PROFILE."""
        response = suggest(channel, 987_654_321)
        assert not response.suggestions
        assert not response.next_page_token
        assert response.ineligible_reason == FR.Value("FILTER_REASON_VIEWER_MISSING_PROFILE")

    @pytest.mark.parametrize(("user_id", "reason"), [
        (50, "FILTER_REASON_VIEWER_MISSING_PROFILE"),
        (31, "FILTER_REASON_VIEWER_UNDER_16"),
        (32, "FILTER_REASON_VIEWER_UNDER_16"),
        (34, "FILTER_REASON_VIEWER_UNDER_16"),
        (20, "FILTER_REASON_VIEWER_ACCOUNT_STATE"),
        (21, "FILTER_REASON_VIEWER_ACCOUNT_STATE"),
        (22, "FILTER_REASON_VIEWER_ACCOUNT_STATE"),
        (23, "FILTER_REASON_VIEWER_ACCOUNT_STATE"),
        (24, "FILTER_REASON_VIEWER_ACCOUNT_STATE"),
    ])
    def test_ineligible_viewer_gets_nothing_and_the_reason(self, channel: grpc.Channel, user_id: int,
                                                          reason: str) -> None:
        """A viewer without a profile, under 16 or of unknown age, or whose
        account is not active gets no suggestions on either surface, and the
        reason why."""
        for surface in (NEW, SHARE):
            response = suggest(channel, user_id, surface=surface)
            assert not response.suggestions
            assert response.ineligible_reason == FR.Value(reason)

    @pytest.mark.parametrize("user_id", [0, -5])
    def test_non_positive_user_id_is_invalid(self, channel: grpc.Channel, user_id: int) -> None:
        """A user id that is not positive is INVALID_ARGUMENT naming user_id."""
        expect_invalid(lambda: suggest(channel, user_id), "user_id")

    def test_unknown_surface_is_invalid(self, channel: grpc.Channel) -> None:
        """A surface number the API does not define is INVALID_ARGUMENT
        naming surface."""
        expect_invalid(lambda: suggest(channel, 1, surface=77), "surface")


# --- pages ---------------------------------------------------------------


class TestPageWalk:
    @pytest.mark.parametrize("page_size", range(1, 9))
    def test_walk_shows_everyone_once_and_ends(self, channel: grpc.Channel, tiny_network: TinyNetwork,
                                               page_size: int) -> None:
        """Walking the pages shows every suggestion exactly once, in the
        order of the one-page answer, no page longer than page_size; the last
        page has an empty next_page_token."""
        net = tiny_network
        pages = walk(channel, net.viewer, page_size)
        seen = [u for p in pages for u in ids(p)]
        assert len(seen) == len(set(seen)), seen
        assert seen == ids(suggest(channel, net.viewer))
        assert set(seen) == set(net.safe_for_viewer)
        assert all(len(p.suggestions) <= page_size for p in pages)
        assert all(p.next_page_token for p in pages[:-1])
        assert pages[-1].next_page_token == ""
        n = len(net.safe_for_viewer)
        assert len(pages) == max(1, -(-n // page_size))

    def test_share_sheet_walk(self, channel: grpc.Channel, tiny_network: TinyNetwork) -> None:
        """A share-sheet walk also shows everyone once and ends."""
        pages = walk(channel, tiny_network.viewer, 2, SHARE)
        seen = [u for p in pages for u in ids(p)]
        assert seen == ids(suggest(channel, tiny_network.viewer, surface=SHARE))
        assert len(seen) == len(set(seen))
        assert pages[-1].next_page_token == ""

    def test_page_size_zero_means_the_default(self, channel: grpc.Channel, tiny_network: TinyNetwork) -> None:
        """page_size 0 is the documented default (20), so the 7 safe users fit
        on one page."""
        response = suggest(channel, tiny_network.viewer, page_size=0)
        assert set(ids(response)) == set(tiny_network.safe_for_viewer)
        assert response.next_page_token == ""

    def test_page_size_maximum_is_accepted(self, channel: grpc.Channel) -> None:
        """page_size 100, the documented maximum, is accepted."""
        assert suggest(channel, 1, page_size=100).suggestions

    @pytest.mark.parametrize("page_size", [-1, -(2**31)])
    def test_negative_page_size_is_invalid(self, channel: grpc.Channel, page_size: int) -> None:
        """A negative page_size is INVALID_ARGUMENT naming page_size."""
        expect_invalid(lambda: suggest(channel, 1, page_size=page_size), "page_size")

    @pytest.mark.parametrize("page_size", [101, 2**31 - 1])
    def test_page_size_over_the_maximum_is_coerced(self, fresh_channel: grpc.Channel, page_size: int) -> None:
        """AIP-158: a page_size over 100 is served as 100, not refused: the
        same page as page_size 100, with the same next page. (An over-large
        request used to be INVALID_ARGUMENT; this is the change issue 19
        asked for.)"""
        big = suggest(fresh_channel, 1, page_size=page_size, surface=SHARE)
        at_max = suggest(fresh_channel, 1, page_size=100, surface=SHARE)
        assert ids(big) == ids(at_max) and ids(big)

    def test_coerced_page_holds_the_maximum_and_pages_on(
            self, fresh_channel: grpc.Channel, tiny_network: TinyNetwork, monkeypatch: pytest.MonkeyPatch) -> None:
        """With the maximum lowered to 3 (the tiny network has fewer than 100
        safe users), page_size 101 serves pages of exactly 3 with a
        next_page_token, and walking them finds every safe user once."""
        from service.servicers import suggestion

        monkeypatch.setattr(suggestion, "MAX_PAGE_SIZE", 3)
        first = suggest(fresh_channel, tiny_network.viewer, page_size=101)
        assert len(first.suggestions) == 3 and first.next_page_token
        seen, token = ids(first), first.next_page_token
        while token:
            page = suggest(fresh_channel, tiny_network.viewer, page_size=101, page_token=token)
            assert len(page.suggestions) <= 3
            seen, token = seen + ids(page), page.next_page_token
        assert sorted(seen) == sorted(tiny_network.safe_for_viewer)

    def test_later_pages_are_filtered_against_live_safety_state(
            self, fresh_server: RunningServer, fresh_channel: grpc.Channel, tiny_network: TinyNetwork) -> None:
        """A user blocked after the first page was served never appears on a
        later page of the same walk."""
        first = suggest(fresh_channel, 1, page_size=2)
        rest_before = [u for p in walk(fresh_channel, 1, 100) for u in ids(p) if u not in ids(first)]
        victim = rest_before[0]
        apply(fresh_channel, edge("block", victim, 1, "live-block-1"))
        later: list[int] = []
        token = first.next_page_token
        while token:
            page = suggest(fresh_channel, 1, page_size=2, page_token=token)
            later += ids(page)
            token = page.next_page_token
        assert victim not in later
        assert set(ids(first)) | set(later) == set(tiny_network.safe_for_viewer) - {victim}


class TestPageTokens:
    @pytest.fixture
    def token(self, channel: grpc.Channel) -> str:
        """A genuine token for viewer 1's new-contacts walk, after page one."""
        token = suggest(channel, 1, page_size=2).next_page_token
        assert token
        return token

    @pytest.mark.parametrize("mangle", [
        pytest.param(lambda t: alter(t, len(t.split(".")[0]) // 2), id="body-changed"),
        pytest.param(lambda t: alter(t, len(t) - 3), id="signature-changed"),
        pytest.param(lambda t: t.split(".")[0], id="signature-dropped"),
        pytest.param(lambda t: t[:-4], id="truncated"),
        pytest.param(lambda t: t + ".x", id="extra-part"),
        pytest.param(lambda t: "not a token", id="garbage"),
        pytest.param(lambda t: "." + t.split(".")[1], id="empty-body"),
    ])
    def test_tampered_token_is_invalid(self, channel: grpc.Channel, token: str, mangle: object) -> None:
        """A token altered in any way is INVALID_ARGUMENT naming page_token,
        with the ErrorInfo reason INVALID_PAGE_TOKEN."""
        bad = mangle(token)  # type: ignore[operator]
        assert bad != token
        _, info = expect_invalid(lambda: suggest(channel, 1, page_size=2, page_token=bad), "page_token")
        assert info.reason == "INVALID_PAGE_TOKEN"

    def test_token_of_another_user_is_invalid(self, channel: grpc.Channel, token: str) -> None:
        """A token issued to one viewer does not work for another."""
        text, _ = expect_invalid(lambda: suggest(channel, 10, page_size=2, page_token=token), "page_token")
        assert "another user" in text

    def test_token_of_another_surface_is_invalid(self, channel: grpc.Channel, token: str) -> None:
        """A new-contacts token does not work on the share sheet."""
        text, _ = expect_invalid(
            lambda: suggest(channel, 1, page_size=2, page_token=token, surface=SHARE), "page_token")
        assert "another surface" in text

    def test_unspecified_surface_token_continues_a_new_contacts_walk(self, channel: grpc.Channel,
                                                                     token: str) -> None:
        """SURFACE_UNSPECIFIED is new contacts, so the token of a walk begun
        with it continues with SURFACE_NEW_CONTACTS."""
        first = suggest(channel, 1, page_size=2, surface=UNSPECIFIED)
        second = suggest(channel, 1, page_size=2, surface=NEW, page_token=first.next_page_token)
        assert second.suggestions
        assert not set(ids(first)) & set(ids(second))

    def test_token_of_another_snapshot_is_invalid(self, tmp_path: Path, tiny_network: TinyNetwork,
                                                  server_factory: Callable[..., RunningServer]) -> None:
        """A token from a server on another snapshot, even one signing with
        the same key, is INVALID_ARGUMENT naming page_token."""
        extra = tmp_path / "extra.jsonl"
        extra.write_text('{"eventId":"x-1","eventTime":"2023-11-14T22:30:00Z",'
                         '"follow":{"actorId":"15","targetId":"16"}}\n')
        other_dir = tmp_path / "other"
        rebuild([*tiny_network.log_paths, extra], other_dir, clock=ManualClock(tiny_network.snapshot_time))
        key = b"k" * 32
        a = server_factory(token_keys=(key,))
        b = server_factory(other_dir, token_keys=(key,))
        assert a.server.state.snapshot_id != b.server.state.snapshot_id
        with grpc.insecure_channel(a.target) as ca, grpc.insecure_channel(b.target) as cb:
            token = suggest(ca, 1, page_size=2).next_page_token
            # The key really is shared: the token works on its own server.
            assert suggest(ca, 1, page_size=2, page_token=token).suggestions
            text, _ = expect_invalid(lambda: suggest(cb, 1, page_size=2, page_token=token), "page_token")
            assert "snapshot" in text

    def test_expired_token_is_invalid(self, fresh_server: RunningServer, fresh_channel: grpc.Channel) -> None:
        """A token is good until its time-to-live has passed on the server's
        clock and INVALID_ARGUMENT naming page_token after."""
        token = suggest(fresh_channel, 1, page_size=2).next_page_token
        ttl = fresh_server.server.config.token_ttl_s
        fresh_server.clock.advance(ttl - 1)
        assert suggest(fresh_channel, 1, page_size=2, page_token=token).suggestions
        fresh_server.clock.advance(2)
        text, _ = expect_invalid(lambda: suggest(fresh_channel, 1, page_size=2, page_token=token), "page_token")
        assert "expired" in text


# --- ApplyEvents -----------------------------------------------------------


def _far_future() -> ev_pb.GraphEvent:
    stamp = timestamp_pb2.Timestamp(seconds=253_402_300_799)  # 9999-12-31, far past any clock skew
    return ev_pb.GraphEvent(event_id="bad", event_time=stamp, follow=ev_pb.Edge(actor_id=1, target_id=2))


BAD_EVENTS = [
    pytest.param(edge("follow", 1, 1, "bad"), "follow.target_id", id="self-follow"),
    pytest.param(edge("block", 0, 10, "bad"), "block.actor_id", id="zero-actor"),
    pytest.param(edge("mute", 1, -3, "bad"), "mute.target_id", id="negative-target"),
    pytest.param(ev_pb.GraphEvent(event_id="bad", event_time=serve_time_stamp(),
                                  interaction=ev_pb.Interaction(actor_id=1, target_id=10)),
                 "interaction.type", id="unset-interaction-type"),
    pytest.param(ev_pb.GraphEvent(event_id="bad", event_time=serve_time_stamp(), interaction=ev_pb.Interaction(
        actor_id=1, target_id=10, type=42)), "interaction.type", id="unknown-interaction-type"),
    pytest.param(profile("bad", user_id=11, region_code="Britain"), "profile.region_code", id="bad-region"),
    pytest.param(profile("bad", user_id=11, age_band=9), "profile.age_band", id="unknown-age-band"),
    pytest.param(profile("bad", user_id=0, age_band=4), "profile.user_id", id="zero-profile-user"),
    pytest.param(ev_pb.GraphEvent(event_id="bad"), "kind", id="no-kind"),
    pytest.param(ev_pb.GraphEvent(event_id="bad", follow=ev_pb.Edge(actor_id=1, target_id=2)), "event_time",
                 id="no-event-time"),
    pytest.param(ev_pb.GraphEvent(event_id="bad", profile=profile_pb.UserProfile(user_id=11, age_band=4)),
                 "event_time", id="no-event-time-profile"),
    pytest.param(edge("follow", 1, 2, ""), "event_id", id="no-event-id"),
    pytest.param(_far_future(), "event_time", id="far-future"),
]


class TestApplyEvents:
    @pytest.mark.parametrize(("bad", "field"), BAD_EVENTS)
    def test_bad_event_rejects_the_whole_batch(self, fresh_server: RunningServer, fresh_channel: grpc.Channel,
                                               bad: ev_pb.GraphEvent, field: str) -> None:
        """A bad event at index 2 is INVALID_ARGUMENT naming events[2] and the
        field, and none of the batch is applied: the good events before it
        (a block, a ban) change nothing."""
        store = fresh_server.server.state.store
        watermark = store.watermark
        batch = [edge("block", 1, 10, "ok-0"),
                 profile("ok-1", user_id=11, account_state=AccountState.BANNED), bad]
        text, _ = expect_invalid(lambda: apply(fresh_channel, *batch), f"events[2].{field}")
        assert "events[2]." in text
        assert store.watermark == watermark
        assert store.profiles.column("account_state")[store.row(11)] == AccountState.ACTIVE
        assert {10, 11} <= set(ids(suggest(fresh_channel, 1)))
        # The good events were not remembered as applied either.
        assert apply(fresh_channel, *batch[:2]).applied == 2

    def test_batch_over_the_maximum_is_rejected(self, fresh_server: RunningServer,
                                                fresh_channel: grpc.Channel) -> None:
        """More than 1000 events is INVALID_ARGUMENT naming events, nothing
        applied; exactly 1000 is accepted."""
        store = fresh_server.server.state.store
        watermark = store.watermark
        batch = [edge("follow", 100_000 + i, 1, f"big-{i}") for i in range(1001)]
        text, _ = expect_invalid(lambda: apply(fresh_channel, *batch), "events")
        assert "1000" in text
        assert store.watermark == watermark
        assert store.row(100_000) == -1
        response = apply(fresh_channel, *batch[:1000])
        assert (response.applied, response.duplicates, response.watermark) == (1000, 0, watermark + 1000)

    def test_retried_batch_counts_duplicates_and_changes_nothing(
            self, fresh_server: RunningServer, fresh_channel: grpc.Channel) -> None:
        """Retrying a batch applies nothing again: every event is counted in
        duplicates, the watermark stays, the interaction strength does not
        double; a batch mixing old and new ids applies only the new ones."""
        store = fresh_server.server.state.store
        batch = [message(14, 1, "r-1"), message(14, 1, "r-2"), edge("follow", 15, 16, "r-3")]
        first = apply(fresh_channel, *batch)
        assert (first.applied, first.duplicates) == (3, 0)
        strength = store.strength(store.row(14), store.row(1))
        retry = apply(fresh_channel, *batch)
        assert (retry.applied, retry.duplicates, retry.watermark) == (0, 3, first.watermark)
        assert store.strength(store.row(14), store.row(1)) == strength
        mixed = apply(fresh_channel, batch[0], message(14, 1, "r-4"))
        assert (mixed.applied, mixed.duplicates, mixed.watermark) == (1, 1, first.watermark + 1)

    def test_event_id_from_the_snapshot_logs_is_a_duplicate(self, fresh_server: RunningServer,
                                                            fresh_channel: grpc.Channel) -> None:
        """A retry of an event the rebuild already applied (edge CSV and JSON
        lines alike: same id, same content) counts as a duplicate live and
        changes nothing; the same ids carrying an unfollow and an unblock
        are refused (ALREADY_EXISTS) and those must not happen either."""
        store = fresh_server.server.state.store
        watermark = store.watermark
        response = apply(fresh_channel, edge("follow", 1, 2, "c-0"), edge("block", 43, 1, "j-1"))
        assert (response.applied, response.duplicates) == (0, 2)
        for i, batch in enumerate(([edge("unfollow", 1, 2, "c-0")], [message(14, 1, "c-new"),
                                                                      edge("unblock", 43, 1, "j-1")])):
            expect_already_exists(lambda batch=batch: apply(fresh_channel, *batch), f"events[{i}].event_id")
        assert store.watermark == watermark
        assert store.is_friend(store.row(1), store.row(2))
        assert store.is_blocked_either(store.row(1), store.row(43))

    def test_repeated_id_within_a_batch_is_a_duplicate(self, fresh_channel: grpc.Channel) -> None:
        """An event id repeated inside one batch (same content) is applied once."""
        response = apply(fresh_channel, message(14, 1, "same"), message(14, 1, "same"))
        assert (response.applied, response.duplicates) == (1, 1)

    def test_id_reused_for_another_event_is_refused(self, fresh_server: RunningServer,
                                                    fresh_channel: grpc.Channel) -> None:
        """Issue 20: a block sent with the id of an earlier follow is
        ALREADY_EXISTS naming events[i].event_id (reason EVENT_ID_REUSED), the
        whole batch applies nothing; so is the same id twice in one batch
        with other content. An exact retry stays a duplicate."""
        store = fresh_server.server.state.store
        assert apply(fresh_channel, edge("follow", 15, 16, "k-1")).applied == 1
        watermark = store.watermark
        expect_already_exists(lambda: apply(fresh_channel, message(14, 1, "k-2"), edge("block", 15, 16, "k-1")),
                              "events[1].event_id")
        expect_already_exists(
            lambda: apply(fresh_channel, edge("block", 15, 11, "k-3"), edge("follow", 15, 11, "k-3")),
            "events[1].event_id")
        assert store.watermark == watermark
        assert "k-2" not in store.seen_ids and "k-3" not in store.seen_ids
        assert not store.is_blocked_either(store.row(15), store.row(16))
        assert not store.is_blocked_either(store.row(15), store.row(11))
        retry = apply(fresh_channel, edge("follow", 15, 16, "k-1"), message(14, 1, "k-2"))
        assert (retry.applied, retry.duplicates) == (1, 1)

    def test_watermark_counts_applied_events(self, fresh_server: RunningServer,
                                             fresh_channel: grpc.Channel) -> None:
        """Each applied event gets the next sequence number; the watermark is
        the last one; an empty batch reports the current watermark."""
        start = fresh_server.server.state.store.watermark
        assert apply(fresh_channel).watermark == start
        assert apply(fresh_channel, message(14, 1, "w-1")).watermark == start + 1
        assert apply(fresh_channel, message(14, 1, "w-2"), message(14, 1, "w-3")).watermark == start + 3

    def test_partial_profile_update_keeps_the_other_fields(self, fresh_server: RunningServer,
                                                           fresh_channel: grpc.Channel) -> None:
        """A profile event carrying one field changes that field only: age
        band, account state, region, assurance and discoverability stay; the
        change takes effect on the next call (FRIENDS privacy hides 10 from a
        stranger)."""
        store = fresh_server.server.state.store
        row = store.row(10)
        before = {c: int(store.profiles.column(c)[row]) for c in
                  ("age_band", "account_state", "region", "age_assurance", "discoverable", "message_privacy")}
        assert before["age_band"] == AgeBand.ADULT and before["region"] == encode_region("GB")
        assert before["age_assurance"] == AgeAssurance.VERIFIED
        apply(fresh_channel, profile("p-1", user_id=10, message_privacy=MessagePrivacy.FRIENDS))
        after = {c: int(store.profiles.column(c)[row]) for c in before}
        assert after == {**before, "message_privacy": MessagePrivacy.FRIENDS}
        assert 10 not in ids(suggest(fresh_channel, 1))
        apply(fresh_channel, profile("p-2", user_id=10, region_code="DE"))
        assert int(store.profiles.column("message_privacy")[row]) == MessagePrivacy.FRIENDS
        assert int(store.profiles.column("region")[row]) == encode_region("DE")
        assert int(store.profiles.column("age_band")[row]) == AgeBand.ADULT

    def test_new_user_with_a_profile_becomes_suggestible(self, fresh_channel: grpc.Channel) -> None:
        """A user first seen through ApplyEvents, given a profile and a
        friendship with the viewer's friend, is suggested on the next call
        with one mutual friend."""
        apply(fresh_channel,
              profile("n-1", user_id=60, age_band=AgeBand.ADULT, message_privacy=MessagePrivacy.EVERYONE,
                      account_state=AccountState.ACTIVE),
              edge("follow", 60, 2, "n-2"), edge("follow", 2, 60, "n-3"))
        got = {s.user_id: s for s in suggest(fresh_channel, 1).suggestions}
        assert 60 in got
        assert got[60].mutual_friend_count == 1

    def test_block_takes_effect_on_the_next_call_both_ways(self, fresh_channel: grpc.Channel) -> None:
        """A block applied through ApplyEvents hides each of the two users
        from the other on the very next SuggestContacts call, on both
        surfaces, whoever blocked."""
        assert 10 in ids(suggest(fresh_channel, 1)) and 1 in ids(suggest(fresh_channel, 10))
        assert 11 in ids(suggest(fresh_channel, 1)) and 1 in ids(suggest(fresh_channel, 11))
        apply(fresh_channel, edge("block", 10, 1, "b-1"))
        apply(fresh_channel, edge("block", 1, 11, "b-2"))
        for surface in (NEW, SHARE):
            shown_to_1 = set(ids(suggest(fresh_channel, 1, surface=surface)))
            assert not {10, 11} & shown_to_1
            assert 1 not in ids(suggest(fresh_channel, 10, surface=surface))
            assert 1 not in ids(suggest(fresh_channel, 11, surface=surface))

    def test_erased_user_disappears_from_every_answer_at_once(
            self, fresh_channel: grpc.Channel, tiny_network: TinyNetwork) -> None:
        """After erase_user the user is in nobody's suggestions on either
        surface, gets none itself, and no longer counts as a mutual friend."""
        net = tiny_network
        before = {s.user_id: s for s in suggest(fresh_channel, 1).suggestions}
        assert before[12].mutual_friend_count == 3
        assert 4 in ids(suggest(fresh_channel, 1, surface=SHARE))
        assert 12 in ids(suggest(fresh_channel, 10))
        apply(fresh_channel, erase(12, "e-1"), erase(4, "e-2"))
        for viewer in net.all_users:
            for surface in (NEW, SHARE):
                response = suggest(fresh_channel, viewer, surface=surface)
                assert not {4, 12} & set(ids(response)), (viewer, surface)
        for gone in (4, 12):
            response = suggest(fresh_channel, gone)
            assert not response.suggestions
            assert response.ineligible_reason == FR.Value("FILTER_REASON_VIEWER_MISSING_PROFILE")
        # 10 shared 2 and 3 with the viewer, neither erased.
        after = {s.user_id: s for s in suggest(fresh_channel, 1).suggestions}
        assert after[10].mutual_friend_count == 2
        assert 12 not in after


# --- serving -------------------------------------------------------------


class TestServing:
    def test_health_reports_serving_for_the_server_and_each_service(self, channel: grpc.Channel) -> None:
        """Standard health checking says SERVING for "" and every service;
        an unknown service is NOT_FOUND."""
        stub = health_pb2_grpc.HealthStub(channel)
        assert {"contactgraph.v1.SuggestionService", "contactgraph.v1.GraphService"} <= set(SERVICE_NAMES)
        for name in ("", *SERVICE_NAMES):
            response = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, name
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    def test_reflection_lists_the_services_and_drives_a_call(self, channel: grpc.Channel,
                                                             tiny_network: TinyNetwork) -> None:
        """Server reflection lists both v1 services (and health), and a
        SuggestContacts call built only from descriptors fetched by reflection
        returns the same suggestions as the generated stub."""
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"contactgraph.v1.SuggestionService", "contactgraph.v1.GraphService",
                "grpc.health.v1.Health"} <= services
        pool = descriptor_pool.DescriptorPool(db)
        assert pool.FindServiceByName("contactgraph.v1.GraphService").FindMethodByName("ApplyEvents")
        method = pool.FindServiceByName("contactgraph.v1.SuggestionService").FindMethodByName("SuggestContacts")
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        assert request_cls is not suggestion_service_pb2.SuggestContactsRequest
        call = channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString)
        request = request_cls(user_id=tiny_network.viewer, page_size=100)
        response = call(request, timeout=10)
        assert [s.user_id for s in response.suggestions] == ids(suggest(channel, tiny_network.viewer))

    def test_second_server_on_a_busy_port_fails(self, server: RunningServer, channel: grpc.Channel,
                                                tiny_network: TinyNetwork,
                                                state_factory: Callable[[], ServingState]) -> None:
        """Starting a server on a port another server holds raises PortInUse
        (no silent SO_REUSEPORT sharing), and the first keeps serving."""
        state = state_factory()
        config = ServerConfig(snapshot=tiny_network.snapshot_dir, host="127.0.0.1", port=server.port)
        with pytest.raises(PortInUse, match=str(server.port)):
            create_server(config, state)
        assert suggest(channel, 1).suggestions


# --- the command line ----------------------------------------------------------


# Bytes no protobuf message decodes: a tag varint longer than ten bytes, and
# a length-delimited field 1 that claims more bytes than follow.
GARBAGE = (b"\xff" * 11, b"\x0a\x05ab")


def _unary_methods() -> list[tuple[str, type]]:
    """Every unary method the server serves (ours and health's Check), as
    (full method path, request class)."""
    from google.protobuf import message_factory as factory
    from grpc_health.v1 import health_pb2 as hp
    pool = descriptor_pool.Default()
    methods = []
    for name in (*SERVICE_NAMES, "grpc.health.v1.Health"):
        service = pool.FindServiceByName(name)
        for m in service.methods:
            if not m.client_streaming and not m.server_streaming:
                methods.append((f"/{service.full_name}/{m.name}", factory.GetMessageClass(m.input_type)))
    assert hp.HealthCheckRequest in [cls for _, cls in methods]
    return methods


class TestUndecodableRequests:
    @pytest.mark.parametrize("garbage", GARBAGE)
    def test_every_unary_method_answers_invalid_argument(self, channel: grpc.Channel, garbage: bytes) -> None:
        """Bytes that are no valid request message get INVALID_ARGUMENT with
        an ErrorInfo naming the request (reason UNDECODABLE_REQUEST), not
        gRPC's INTERNAL "Exception deserializing request!", from every
        method of every service."""
        methods = _unary_methods()
        assert len(methods) > 10
        for path, request_class in methods:
            with pytest.raises(DecodeError):
                request_class().ParseFromString(garbage)  # the bytes really are undecodable
            call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as caught:
                call(garbage, timeout=10)
            text, info = invalid_argument(caught.value)
            assert "deserializing" not in text and "not a valid" in text, (path, text)
            assert (info.reason, info.metadata["field"]) == ("UNDECODABLE_REQUEST", "request"), path

    def test_reflection_stream_answers_invalid_argument(self, channel: grpc.Channel) -> None:
        """A streaming method (server reflection) refuses an undecodable
        message in its request stream the same way."""
        call = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                     request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as caught:
            list(call(iter([GARBAGE[0]]), timeout=10))
        invalid_argument(caught.value)

    def test_valid_bytes_still_served(self, channel: grpc.Channel) -> None:
        """The raw path itself works: health's Check with valid bytes."""
        from grpc_health.v1 import health_pb2 as hp
        call = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None,
                                   response_deserializer=None)
        response = hp.HealthCheckResponse.FromString(call(hp.HealthCheckRequest().SerializeToString(), timeout=10))
        assert response.status == hp.HealthCheckResponse.SERVING


class TestCommandLine:
    def test_serve_probe_and_sigterm(self, tiny_network: TinyNetwork, tmp_path: Path) -> None:
        """`contactgraph serve --port 0` prints the port it chose; `probe
        suggest` prints the suggestion table and `probe health` the health
        table, both exiting 0; SIGTERM stops the server with exit code 0
        within its grace period. A probe of a closed port exits 4
        (UNREACHABLE)."""
        assert CONTACTGRAPH.exists(), f"{CONTACTGRAPH} is missing: run make install"
        exe = str(CONTACTGRAPH)
        # The probes run this checkout's CLI (the console script imports
        # whichever tree comes first on the path).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        server = ServerProcess(tiny_network.snapshot_dir, tmp_path / "serve.err", workers=None)
        try:
            server.start(timeout_s=60)
            assert server.host == "127.0.0.1"
            target = server.target
            assert server.port > 0

            out = subprocess.run([exe, "probe", "suggest", "1", "--target", target], capture_output=True,
                                 text=True, timeout=60, env=env)
            assert out.returncode == 0, out.stderr
            assert re.search(r"^user\s+score\s+reasons\s+mutual friends\s*$", out.stdout, re.M), out.stdout
            assert server.snapshot_id in out.stdout
            shown = {int(m) for m in re.findall(r"^(\d+)\s", out.stdout, re.M)}
            assert shown and shown <= set(tiny_network.safe_for_viewer), out.stdout

            out = subprocess.run([exe, "probe", "health", "--target", target], capture_output=True, text=True,
                                 timeout=60, env=env)
            assert out.returncode == 0, out.stderr
            assert re.search(r"^service\s+status\s*$", out.stdout, re.M), out.stdout
            assert out.stdout.count("SERVING") == 1 + len(SERVICE_NAMES)

            assert server.stop(timeout_s=5.0 + 10) == 0
        finally:
            server.kill()

        out = subprocess.run([exe, "probe", "health", "--target", target, "--timeout", "2"], capture_output=True,
                             text=True, timeout=60, env=env)
        assert out.returncode == 4
        assert "cannot reach" in out.stderr
