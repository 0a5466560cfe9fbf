"""Guardian oversight, send-time checks, relationship reads, explanations
and policy reloads over real gRPC (issues 4 and 8): a real server on a free
loopback port over the tiny network (see conftest), its guardian state in
``data_dir``, its clock a ManualClock.

Users of the tiny network used here: adult 1 (friends 2, 3, 4); minor 30
(16_17, discoverable, friends with adult 2), whose only safe suggestion is
minor 33 (who followed 30); 40 has NO_ONE privacy; 42 is blocked by 1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc
import pytest

from contactgraph.v1 import (
    filter_reason_pb2,
    graph_service_pb2,
    graph_service_pb2_grpc,
    guardian_service_pb2_grpc,
    safety_service_pb2,
    safety_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)
from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import guardian_service_pb2 as gpb
from contactgraph.v1 import user_profile_pb2 as profile_pb
from graph.clock import ManualClock
from service.safety.guardian import issue_consent_token
from service.server.config import ServerConfig
from service.server.server import Server, reload_policy
from service.server.state import ServingState
from tests.conftest import SERVE_TIME
from tests.support.grpc_errors import error_info, status_code
from tests.support.server import policy_text, start_server

if TYPE_CHECKING:
    from tests.conftest import TinyNetwork

pytestmark = pytest.mark.integration

KEY = b"guardian-integration-test-key-0001"
CHILD, SAFE_FOR_CHILD, ADULT_FRIEND = 30, 33, 2
FR = filter_reason_pb2.FilterReason
D = safety_service_pb2.Decision
A = gpb.AuditAction
MSG = gpb.GuardianMessaging


class Running(NamedTuple):
    server: Server
    channel: grpc.Channel
    clock: ManualClock
    state: ServingState
    config: ServerConfig

    @property
    def guardian(self) -> guardian_service_pb2_grpc.GuardianServiceStub:
        return guardian_service_pb2_grpc.GuardianServiceStub(self.channel)

    @property
    def safety(self) -> safety_service_pb2_grpc.SafetyServiceStub:
        return safety_service_pb2_grpc.SafetyServiceStub(self.channel)

    @property
    def graph(self) -> graph_service_pb2_grpc.GraphServiceStub:
        return graph_service_pb2_grpc.GraphServiceStub(self.channel)

    @property
    def suggestion(self) -> suggestion_service_pb2_grpc.SuggestionServiceStub:
        return suggestion_service_pb2_grpc.SuggestionServiceStub(self.channel)


class Cluster:
    """Servers started by one test over one data directory; all stopped at
    the end."""

    def __init__(self, snapshot: Path, data_dir: Path, policy: Path) -> None:
        self.snapshot, self.data_dir, self.policy = snapshot, data_dir, policy
        self.running: list[Running] = []

    def start(self, clock_at: float = SERVE_TIME) -> Running:
        started = start_server(self.snapshot, ManualClock(clock_at), workers=8, data_dir=self.data_dir,
                               guardian_key=KEY, policy_path=self.policy)
        channel = grpc.insecure_channel(started.target)
        grpc.channel_ready_future(channel).result(timeout=10)
        running = Running(started.server, channel, started.clock, started.server.state, started.server.config)
        self.running.append(running)
        return running

    def stop(self, running: Running) -> None:
        running.channel.close()
        running.server.stop(0)
        running.state.safety.guardians.close()
        self.running.remove(running)


@pytest.fixture
def cluster(tiny_network: TinyNetwork, tmp_path: Path) -> Iterator[Cluster]:
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text("v1"))
    c = Cluster(tiny_network.snapshot_dir, tmp_path / "data", policy)
    yield c
    for running in list(c.running):
        c.stop(running)


@pytest.fixture
def srv(cluster: Cluster) -> Running:
    return cluster.start()


# --- helpers -----------------------------------------------------------------

_ids = iter(range(1, 10**9))


def apply(r: Running, *events: ev_pb.GraphEvent) -> None:
    """ApplyEvents, each event stamped with the server's clock (event_time
    is required)."""
    for e in events:
        if not e.HasField("event_time"):
            e.event_time.FromNanoseconds(int(r.clock.now() * 1e9))
    r.graph.ApplyEvents(graph_service_pb2.ApplyEventsRequest(events=list(events)), timeout=10)


def edge(kind: str, actor: int, target: int) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=f"gi-{next(_ids)}", **{kind: ev_pb.Edge(actor_id=actor, target_id=target)})


def message(actor: int, target: int) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=f"gi-{next(_ids)}", interaction=ev_pb.Interaction(
        actor_id=actor, target_id=target, type=ev_pb.INTERACTION_TYPE_MESSAGE))


def profile(user_id: int, **fields: Any) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=f"gi-{next(_ids)}", profile=profile_pb.UserProfile(user_id=user_id, **fields))


def token(r: Running, guardian: str, child: int = CHILD, *, at: float | None = None, key: bytes = KEY) -> str:
    return issue_consent_token(key, guardian, child, r.clock.now() if at is None else at)


def link(r: Running, guardian: str, child: int = CHILD, consent: str | None = None) -> gpb.GuardianLink:
    return r.guardian.LinkGuardian(gpb.LinkGuardianRequest(
        guardian_id=guardian, child_user_id=child,
        consent_token=token(r, guardian, child) if consent is None else consent), timeout=10)


def controls(r: Running, guardian: str, child: int = CHILD, **fields: Any) -> gpb.GuardianControls:
    return r.guardian.SetGuardianControls(gpb.SetGuardianControlsRequest(
        guardian_id=guardian, child_user_id=child, **fields), timeout=10)


def overview(r: Running, guardian: str, child: int = CHILD) -> gpb.GuardianOverview:
    return r.guardian.GetGuardianOverview(gpb.GetGuardianOverviewRequest(guardian_id=guardian, child_user_id=child),
                                          timeout=10)


def transparency(r: Running, child: int = CHILD) -> gpb.GuardianTransparency:
    return r.guardian.GetGuardianTransparency(gpb.GetGuardianTransparencyRequest(child_user_id=child), timeout=10)


def records(r: Running, child: int = CHILD) -> list[tuple[int, str]]:
    return [(rec.action, rec.guardian_id) for rec in transparency(r, child).records]


def suggest(r: Running, user: int) -> suggestion_service_pb2.SuggestContactsResponse:
    return r.suggestion.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=user, page_size=100),
                                        timeout=10)


def suggested(r: Running, user: int) -> list[int]:
    return [s.user_id for s in suggest(r, user).suggestions]


def check(r: Running, sender: int, recipient: int) -> safety_service_pb2.CheckMessagingResponse:
    return r.safety.CheckMessaging(safety_service_pb2.CheckMessagingRequest(sender_id=sender, recipient_id=recipient),
                                   timeout=10)


def explain(r: Running, viewer: int, candidate: int) -> suggestion_service_pb2.ExplainSuggestionResponse:
    return r.suggestion.ExplainSuggestion(suggestion_service_pb2.ExplainSuggestionRequest(
        viewer_id=viewer, candidate_id=candidate), timeout=10)


def error_of(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str], str]:
    """(code, ErrorInfo reason, ErrorInfo metadata, message) of a failed call."""
    with pytest.raises(grpc.RpcError) as err:
        call()
    info = error_info(err.value)
    return err.value.code(), info.reason, dict(info.metadata), err.value.details() or ""


def unlink(r: Running, guardian: str, child: int = CHILD, *, by_child: bool = False) -> None:
    r.guardian.UnlinkGuardian(gpb.UnlinkGuardianRequest(guardian_id=guardian, child_user_id=child,
                                                        requested_by_child=by_child), timeout=10)


def daily_totals(got: gpb.GuardianOverview) -> dict[int, int]:
    return {c.user_id: sum(d.count for d in c.daily_messages) for c in got.contacts}


# --- linking ------------------------------------------------------------------


class TestLink:
    @pytest.mark.parametrize("consent", ["", "garbage", "123.deadbeef", "forged-key", "other-child",
                                         "other-guardian", "expired", "future"])
    def test_without_a_valid_token_is_denied_and_audited(self, srv: Running, consent: str) -> None:
        """A link needs the backend's HMAC over guardian, child and time:
        missing, malformed, forged, someone else's, expired or far-future
        tokens give PERMISSION_DENIED, and the denial is audited."""
        now = srv.clock.now()
        tokens = {"forged-key": token(srv, "g", key=b"not-the-key-but-just-as-long-0001"),
                  "other-child": token(srv, "g", child=33),
                  "other-guardian": token(srv, "someone-else"), "expired": token(srv, "g", at=now - 8 * 86400),
                  "future": token(srv, "g", at=now + 86400)}
        assert status_code(lambda: link(srv, "g", consent=tokens.get(consent, consent))) \
            == grpc.StatusCode.PERMISSION_DENIED
        t = transparency(srv)
        assert list(t.links) == []
        assert (A.AUDIT_ACTION_DENIED, "g") in records(srv)

    def test_token_expires_with_the_clock(self, srv: Running) -> None:
        """A token issued now still links in six days, not in eight."""
        consent = token(srv, "g")
        srv.clock.advance(8 * 86400)
        assert status_code(lambda: link(srv, "g", consent=consent)) == grpc.StatusCode.PERMISSION_DENIED
        srv.clock.advance(-2 * 86400)
        assert link(srv, "g", consent=consent).child_user_id == CHILD

    def test_at_most_two_guardians(self, srv: Running) -> None:
        """Two guardians link; a third is FAILED_PRECONDITION; the child
        sees both links."""
        link(srv, "mum")
        link(srv, "dad")
        assert status_code(lambda: link(srv, "aunt")) == grpc.StatusCode.FAILED_PRECONDITION
        assert sorted(lnk.guardian_id for lnk in transparency(srv).links) == ["dad", "mum"]
        assert status_code(lambda: link(srv, "mum")) == grpc.StatusCode.ALREADY_EXISTS

    @pytest.mark.parametrize("child", [1, 4242], ids=["adult", "unknown"])
    def test_adult_or_unknown_child_refused(self, srv: Running, child: int) -> None:
        """Guardians link to minors only."""
        assert status_code(lambda: link(srv, "g", child=child)) == grpc.StatusCode.FAILED_PRECONDITION

    def test_unlink_by_child_ends_oversight(self, srv: Running) -> None:
        """The child can unlink; the guardian then reads nothing."""
        link(srv, "g")
        srv.guardian.UnlinkGuardian(gpb.UnlinkGuardianRequest(guardian_id="g", child_user_id=CHILD,
                                                              requested_by_child=True), timeout=10)
        assert status_code(lambda: overview(srv, "g")) == grpc.StatusCode.PERMISSION_DENIED
        assert (A.AUDIT_ACTION_UNLINK, "g") in records(srv)


class TestChildBecomesAdult:
    def test_declared_adult_stays_a_minor_verified_adult_ends_the_link(self, srv: Running) -> None:
        """A child who only declares ADULT (weak assurance, once 16_17) keeps
        minor protections and the link; once verified adult (a profile event
        through ApplyEvents) the link ends and an overview is
        PERMISSION_DENIED, audited."""
        link(srv, "g")
        overview(srv, "g")
        apply(srv, profile(CHILD, age_band=profile_pb.AGE_BAND_ADULT))
        overview(srv, "g")  # still a minor by the rules
        apply(srv, profile(CHILD, age_assurance=profile_pb.AGE_ASSURANCE_VERIFIED))
        srv.clock.advance(86400)
        assert status_code(lambda: overview(srv, "g")) == grpc.StatusCode.PERMISSION_DENIED
        got = records(srv)
        assert (A.AUDIT_ACTION_LINK_ENDED_ADULT, "g") in got and got[-1] == (A.AUDIT_ACTION_DENIED, "g")
        assert list(transparency(srv).links) == []
        assert status_code(lambda: link(srv, "g2")) == grpc.StatusCode.FAILED_PRECONDITION

    def test_verified_adult_in_one_event(self, srv: Running) -> None:
        """A verified ADULT profile event ends the link at once."""
        link(srv, "g")
        apply(srv, profile(CHILD, age_band=profile_pb.AGE_BAND_ADULT, age_assurance=profile_pb.AGE_ASSURANCE_VERIFIED))
        assert status_code(lambda: overview(srv, "g")) == grpc.StatusCode.PERMISSION_DENIED
        assert status_code(lambda: controls(srv, "g", suggestions_enabled=False)) == grpc.StatusCode.PERMISSION_DENIED


# --- controls ------------------------------------------------------------------


class TestControls:
    @pytest.mark.parametrize("first,then", [
        ({"suggestions_enabled": False}, {"suggestions_enabled": True}),
        ({"messaging": MSG.GUARDIAN_MESSAGING_NO_ONE}, {"messaging": MSG.GUARDIAN_MESSAGING_FRIENDS_ONLY}),
        ({"messaging": MSG.GUARDIAN_MESSAGING_FRIENDS_ONLY}, {"messaging": MSG.GUARDIAN_MESSAGING_PLATFORM_DEFAULT}),
    ], ids=["suggestions_back_on", "no_one_to_friends_only", "friends_only_to_default"])
    def test_loosening_refused(self, srv: Running, first: dict[str, Any], then: dict[str, Any]) -> None:
        """Controls only tighten: a loosening call is FAILED_PRECONDITION and
        the controls in force stay."""
        link(srv, "g")
        before = controls(srv, "g", **first)
        assert status_code(lambda: controls(srv, "g", **then)) == grpc.StatusCode.FAILED_PRECONDITION
        assert transparency(srv).controls == before

    def test_unlinked_guardian_denied_and_audited(self, srv: Running) -> None:
        """Controls and overviews from a guardian without a link are
        PERMISSION_DENIED and each denial is audited."""
        link(srv, "mum")
        assert status_code(lambda: controls(srv, "stranger", suggestions_enabled=False)) \
            == grpc.StatusCode.PERMISSION_DENIED
        assert status_code(lambda: overview(srv, "stranger")) == grpc.StatusCode.PERMISSION_DENIED
        assert [g for a, g in records(srv) if a == A.AUDIT_ACTION_DENIED] == ["stranger", "stranger"]
        assert transparency(srv).controls.suggestions_enabled

    def test_removed_contact_takes_effect_on_next_calls(self, srv: Running) -> None:
        """A contact the guardian removed disappears from the child's very
        next SuggestContacts and is denied on the next CheckMessaging, both
        ways."""
        link(srv, "g")
        assert SAFE_FOR_CHILD in suggested(srv, CHILD)
        assert check(srv, CHILD, SAFE_FOR_CHILD).allowed
        controls(srv, "g", add_removed_contact_ids=[SAFE_FOR_CHILD])
        assert SAFE_FOR_CHILD not in suggested(srv, CHILD)
        for a, b in ((CHILD, SAFE_FOR_CHILD), (SAFE_FOR_CHILD, CHILD)):
            got = check(srv, a, b)
            assert not got.allowed and FR.FILTER_REASON_GUARDIAN_REMOVED_CONTACT in got.reasons
        assert FR.FILTER_REASON_GUARDIAN_REMOVED_CONTACT in explain(srv, SAFE_FOR_CHILD, CHILD).filter_reasons

    def test_suggestions_off_takes_effect_on_next_call(self, srv: Running) -> None:
        """Suggestions off: the child's next SuggestContacts is empty and
        says why; others' explanations of the child name the control."""
        link(srv, "g")
        assert suggested(srv, CHILD) == [SAFE_FOR_CHILD]
        controls(srv, "g", suggestions_enabled=False)
        response = suggest(srv, CHILD)
        assert list(response.suggestions) == []
        assert response.ineligible_reason == FR.FILTER_REASON_GUARDIAN_SUGGESTIONS_OFF
        assert FR.FILTER_REASON_GUARDIAN_SUGGESTIONS_OFF in explain(srv, SAFE_FOR_CHILD, CHILD).filter_reasons

    def test_friends_only_on_next_check(self, srv: Running) -> None:
        """FRIENDS_ONLY: the child may still write to its friend, not to the
        minor who only follows it, from the next check on."""
        link(srv, "g")
        assert check(srv, CHILD, SAFE_FOR_CHILD).decision == D.DECISION_ALLOW
        controls(srv, "g", messaging=MSG.GUARDIAN_MESSAGING_FRIENDS_ONLY)
        got = check(srv, CHILD, SAFE_FOR_CHILD)
        assert got.decision == D.DECISION_DENY and FR.FILTER_REASON_GUARDIAN_MESSAGING_RESTRICTED in got.reasons
        assert check(srv, CHILD, ADULT_FRIEND).decision == D.DECISION_ALLOW


# --- overview and transparency ----------------------------------------------------


class TestOverviewAndTransparency:
    def test_overview_shows_counts_not_people_and_every_read_is_logged(self, srv: Running) -> None:
        """The overview holds the controls, per-day message counts per
        contact (no content) and suggestion counts per reason (no ids); every
        read by either guardian appears in the child's records."""
        link(srv, "mum")
        link(srv, "dad")
        assert suggested(srv, CHILD) == [SAFE_FOR_CHILD]
        apply(srv, message(CHILD, ADULT_FRIEND), message(CHILD, ADULT_FRIEND), message(CHILD, SAFE_FOR_CHILD))
        controls(srv, "mum", messaging=MSG.GUARDIAN_MESSAGING_FRIENDS_ONLY)
        got = overview(srv, "mum")
        assert got.controls.messaging == MSG.GUARDIAN_MESSAGING_FRIENDS_ONLY
        counts = {c.user_id: sum(d.count for d in c.daily_messages) for c in got.contacts}
        assert counts == {ADULT_FRIEND: 2, SAFE_FOR_CHILD: 1}
        shown = {s.reason: s.count for s in got.suggestions_shown}
        assert sum(shown.values()) >= 1  # 33 was shown once, counted per reason it was found by
        assert "user_id" not in gpb.ReasonCount.DESCRIPTOR.fields_by_name  # counts, never identities
        overview(srv, "dad")
        overview(srv, "mum")
        reads = [g for a, g in records(srv) if a == A.AUDIT_ACTION_OVERVIEW_READ]
        assert reads == ["mum", "dad", "mum"]
        actions = [a for a, _ in records(srv)]
        assert actions.count(A.AUDIT_ACTION_LINK) == 2 and A.AUDIT_ACTION_CONTROLS_CHANGED in actions

    def test_transparency_of_unknown_child(self, srv: Running) -> None:
        """Transparency for an unknown user is NOT_FOUND."""
        assert status_code(lambda: transparency(srv, 4242)) == grpc.StatusCode.NOT_FOUND


class TestRestart:
    def test_guardian_state_survives_a_restart(self, cluster: Cluster) -> None:
        """Links, controls and audit records are durable: a new server over
        the same data_dir serves the same state, and the controls still
        filter the child's suggestions."""
        first = cluster.start()
        link(first, "mum")
        controls(first, "mum", add_removed_contact_ids=[SAFE_FOR_CHILD],
                 messaging=MSG.GUARDIAN_MESSAGING_FRIENDS_ONLY)
        overview(first, "mum")
        assert status_code(lambda: overview(first, "nobody")) == grpc.StatusCode.PERMISSION_DENIED
        before = transparency(first)
        cluster.stop(first)
        second = cluster.start()
        after = transparency(second)
        assert after == before
        assert [lnk.guardian_id for lnk in after.links] == ["mum"]
        assert list(after.controls.removed_contact_ids) == [SAFE_FOR_CHILD]
        assert SAFE_FOR_CHILD not in suggested(second, CHILD)
        assert not check(second, CHILD, SAFE_FOR_CHILD).allowed
        link(second, "dad")
        assert status_code(lambda: link(second, "aunt")) == grpc.StatusCode.FAILED_PRECONDITION


    def test_audit_kept_for_the_configured_time(self, cluster: Cluster) -> None:
        """Audit records older than the retention (a year by default) are
        dropped when the journal is loaded; links and controls stay."""
        first = cluster.start()
        link(first, "mum")
        controls(first, "mum", suggestions_enabled=False)
        cluster.stop(first)
        later = cluster.start(clock_at=SERVE_TIME + 366 * 86400)
        got = transparency(later)
        assert list(got.records) == []
        assert [lnk.guardian_id for lnk in got.links] == ["mum"] and not got.controls.suggestions_enabled


class TestConsentSingleUse:
    """Issue 20 item 3: a consent token links once."""

    def test_replayed_token_refused_naming_the_field(self, srv: Running) -> None:
        """Link with t, tighten, unlink: LinkGuardian with the same t is
        PERMISSION_DENIED, ErrorInfo CONSENT_TOKEN_USED naming
        consent_token, audited; the controls do not come back at defaults
        under a revived link."""
        consent = token(srv, "g")
        link(srv, "g", consent=consent)
        controls(srv, "g", messaging=MSG.GUARDIAN_MESSAGING_NO_ONE)
        unlink(srv, "g")
        code, reason, metadata, message = error_of(lambda: link(srv, "g", consent=consent))
        assert (code, reason, metadata) == (grpc.StatusCode.PERMISSION_DENIED, "CONSENT_TOKEN_USED",
                                            {"field": "consent_token"})
        assert "consent_token" in message
        assert list(transparency(srv).links) == []
        assert records(srv)[-1] == (A.AUDIT_ACTION_DENIED, "g")
        link(srv, "g")  # fresh consent links

    def test_replay_after_adulthood_and_back_refused(self, srv: Running) -> None:
        """A link that ended because the child became a (verified) adult is
        not revived by the same token once the child's band is a minor's
        again, nor by another token issued before the end."""
        consent, spare = token(srv, "g"), token(srv, "g")
        link(srv, "g", consent=consent)
        srv.clock.advance(60)
        apply(srv, profile(CHILD, age_band=profile_pb.AGE_BAND_ADULT, age_assurance=profile_pb.AGE_ASSURANCE_VERIFIED))
        assert list(transparency(srv).links) == []
        apply(srv, profile(CHILD, age_band=profile_pb.AGE_BAND_16_17, age_assurance=profile_pb.AGE_ASSURANCE_VERIFIED))
        assert error_of(lambda: link(srv, "g", consent=consent))[:2] == (grpc.StatusCode.PERMISSION_DENIED,
                                                                         "CONSENT_TOKEN_USED")
        assert error_of(lambda: link(srv, "g", consent=spare))[:2] == (grpc.StatusCode.PERMISSION_DENIED,
                                                                       "CONSENT_TOKEN_PREDATES_UNLINK")
        assert [lnk.guardian_id for lnk in transparency(srv).links] == []
        link(srv, "g")  # the child, a minor again, consents again

    def test_remembered_across_restart_and_hot_swap(self, cluster: Cluster) -> None:
        """Used tokens and link ends are in the guardian journal: after a
        restart, and after a snapshot hot swap, the used token and an older
        unused one are still refused."""
        first = cluster.start()
        consent, spare = token(first, "g"), token(first, "g")
        link(first, "g", consent=consent)
        first.clock.advance(60)
        unlink(first, "g", by_child=True)
        cluster.stop(first)
        second = cluster.start(clock_at=SERVE_TIME + 120)
        assert error_of(lambda: link(second, "g", consent=consent))[1] == "CONSENT_TOKEN_USED"
        assert error_of(lambda: link(second, "g", consent=spare))[1] == "CONSENT_TOKEN_PREDATES_UNLINK"
        second.server.swapper.load(cluster.snapshot)
        assert error_of(lambda: link(second, "g", consent=consent))[1] == "CONSENT_TOKEN_USED"
        assert error_of(lambda: link(second, "g", consent=spare))[1] == "CONSENT_TOKEN_PREDATES_UNLINK"
        assert list(transparency(second).links) == []


class TestPerLinkOverview:
    """Issue 20 item 5: a guardian sees only activity since its own link."""

    def test_later_guardian_sees_only_messages_since_its_link(self, srv: Running) -> None:
        """mum links, the child writes twice to 2; a minute later dad links
        and the child writes once to 33: dad sees only that one, mum all
        three. mum unlinks and links again: she starts from nothing."""
        link(srv, "mum")
        apply(srv, message(CHILD, ADULT_FRIEND), message(CHILD, ADULT_FRIEND))
        srv.clock.advance(60)
        link(srv, "dad")
        apply(srv, message(CHILD, SAFE_FOR_CHILD))
        assert daily_totals(overview(srv, "dad")) == {SAFE_FOR_CHILD: 1}
        assert daily_totals(overview(srv, "mum")) == {ADULT_FRIEND: 2, SAFE_FOR_CHILD: 1}
        srv.clock.advance(60)
        unlink(srv, "mum")
        link(srv, "mum")
        assert daily_totals(overview(srv, "mum")) == {}
        assert daily_totals(overview(srv, "dad")) == {SAFE_FOR_CHILD: 1}


# --- SafetyService ------------------------------------------------------------------


class TestCheckMessaging:
    @pytest.mark.parametrize("sender,recipient,decision,reason", [
        (1, 2, D.DECISION_ALLOW, None),
        (1, 13, D.DECISION_ALLOW, None),
        (1, 14, D.DECISION_ALLOW, None),
        (1, 10, D.DECISION_ALLOW_AS_REQUEST, None),
        (1, 40, D.DECISION_DENY, FR.FILTER_REASON_MESSAGE_PRIVACY),
        (1, 42, D.DECISION_DENY, FR.FILTER_REASON_BLOCKED),
        (1, 43, D.DECISION_DENY, FR.FILTER_REASON_BLOCKED),
        (1, 30, D.DECISION_DENY, FR.FILTER_REASON_ADULT_TO_MINOR_NOT_FOLLOWED),
        (1, 31, D.DECISION_DENY, FR.FILTER_REASON_UNDER_16),
        (1, 20, D.DECISION_DENY, FR.FILTER_REASON_ACCOUNT_STATE),
        (1, 50, D.DECISION_DENY, FR.FILTER_REASON_MISSING_PROFILE),
        (1, 4242, D.DECISION_DENY, FR.FILTER_REASON_MISSING_PROFILE),
        (31, 1, D.DECISION_DENY, FR.FILTER_REASON_VIEWER_UNDER_16),
        (20, 2, D.DECISION_DENY, FR.FILTER_REASON_VIEWER_ACCOUNT_STATE),
        (30, 2, D.DECISION_ALLOW, None),
    ], ids=["friends", "recipient_follows", "recipient_wrote_first", "stranger", "no_one_privacy",
            "sender_blocked", "recipient_blocked", "adult_to_minor", "under_16", "banned_recipient",
            "no_profile", "unknown", "under_16_sender", "banned_sender", "minor_to_adult_friend"])
    def test_decisions(self, srv: Running, sender: int, recipient: int, decision: int, reason: int | None) -> None:
        """CheckMessaging over gRPC: ALLOW / ALLOW_AS_REQUEST / DENY with the
        filter reasons and the policy version."""
        got = check(srv, sender, recipient)
        assert got.decision == decision and got.allowed is (decision != D.DECISION_DENY)
        assert got.policy_version == "v1"
        if reason is not None:
            assert reason in got.reasons
        else:
            assert list(got.reasons) == []

    def test_block_takes_effect_on_the_very_next_check(self, srv: Running) -> None:
        """A block reported through ApplyEvents denies the next check, both
        ways; an unblock allows again."""
        assert check(srv, 1, 2).decision == D.DECISION_ALLOW
        apply(srv, edge("block", 2, 1))
        for a, b in ((1, 2), (2, 1)):
            got = check(srv, a, b)
            assert got.decision == D.DECISION_DENY and FR.FILTER_REASON_BLOCKED in got.reasons
        apply(srv, edge("unblock", 2, 1))
        assert check(srv, 1, 2).decision == D.DECISION_ALLOW

    def test_guardian_change_takes_effect_on_the_very_next_check(self, srv: Running) -> None:
        """A guardian's NO_ONE denies the child's next check."""
        link(srv, "g")
        assert check(srv, ADULT_FRIEND, CHILD).allowed
        controls(srv, "g", messaging=MSG.GUARDIAN_MESSAGING_NO_ONE)
        got = check(srv, ADULT_FRIEND, CHILD)
        assert not got.allowed and FR.FILTER_REASON_GUARDIAN_MESSAGING_RESTRICTED in got.reasons

    @pytest.mark.parametrize("sender,recipient,field", [(0, 1, "sender_id"), (1, -5, "recipient_id")])
    def test_invalid_ids(self, srv: Running, sender: int, recipient: int, field: str) -> None:
        """Non-positive ids are INVALID_ARGUMENT naming the field."""
        with pytest.raises(grpc.RpcError) as err:
            check(srv, sender, recipient)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in (err.value.details() or "")


class TestBatchCheckMessaging:
    def batch(self, r: Running, sender: int, recipients: list[int]) -> safety_service_pb2.BatchCheckMessagingResponse:
        return r.safety.BatchCheckMessaging(safety_service_pb2.BatchCheckMessagingRequest(
            sender_id=sender, recipient_ids=recipients), timeout=10)

    def test_order_preserved_and_same_answers_as_single_checks(self, srv: Running) -> None:
        """One result per recipient, in request order (duplicates
        included), each equal to the single CheckMessaging answer."""
        recipients = [3, 40, 2, 4242, 30, 3, 10, 1]
        got = self.batch(srv, 1, recipients)
        assert [r.recipient_id for r in got.results] == recipients
        assert got.policy_version == "v1"
        for result, recipient in zip(got.results, recipients, strict=True):
            single = check(srv, 1, recipient)
            assert (result.allowed, result.decision, list(result.reasons)) == (
                single.allowed, single.decision, list(single.reasons))
        assert [r.decision for r in got.results][:3] == [D.DECISION_ALLOW, D.DECISION_DENY, D.DECISION_ALLOW]

    def test_limit(self, srv: Running) -> None:
        """100 recipients are answered; 101 are INVALID_ARGUMENT naming
        recipient_ids."""
        assert len(self.batch(srv, 1, list(range(2, 102))).results) == 100
        with pytest.raises(grpc.RpcError) as err:
            self.batch(srv, 1, list(range(2, 103)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "recipient_ids" in (err.value.details() or "")

    def test_bad_recipient_named(self, srv: Running) -> None:
        """A non-positive recipient is INVALID_ARGUMENT naming its index."""
        with pytest.raises(grpc.RpcError) as err:
            self.batch(srv, 1, [2, 0])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "recipient_ids[1]" in (err.value.details() or "")

    def test_block_in_batch_on_next_call(self, srv: Running) -> None:
        """A block applies to the next batch, only for the blocked recipient."""
        apply(srv, edge("block", 3, 1))
        got = self.batch(srv, 1, [2, 3, 4])
        assert [r.allowed for r in got.results] == [True, False, True]


# --- GraphService reads -----------------------------------------------------------------


class TestRelationshipReads:
    def relationship(self, r: Running, a: int, b: int) -> graph_service_pb2.Relationship:
        return r.graph.GetRelationship(graph_service_pb2.GetRelationshipRequest(actor_id=a, target_id=b), timeout=10)

    def test_friends_with_interactions(self, srv: Running) -> None:
        """Follows both ways, friends, decayed strength each way and last
        interaction times for a pair that talks."""
        got = self.relationship(srv, 1, 2)
        assert got.actor_follows_target and got.target_follows_actor and got.friends
        assert got.actor_to_target_strength > 0 and got.target_to_actor_strength == 0
        assert got.HasField("actor_last_interaction_time") and not got.HasField("target_last_interaction_time")
        assert not (got.actor_blocked_target or got.target_blocked_actor or got.actor_muted_target)

    def test_mutual_friends_blocks_and_mutes(self, srv: Running) -> None:
        """Mutual friend count; blocks seen from each side; a mute."""
        assert self.relationship(srv, 10, 12).mutual_friend_count == 2
        assert self.relationship(srv, 1, 42).actor_blocked_target
        assert self.relationship(srv, 1, 43).target_blocked_actor
        apply(srv, edge("mute", 1, 3))
        assert self.relationship(srv, 1, 3).actor_muted_target
        one_way = self.relationship(srv, 13, 1)
        assert one_way.actor_follows_target and not one_way.target_follows_actor and not one_way.friends

    def test_unknown_pair_is_empty(self, srv: Running) -> None:
        """An unknown user gives an empty relationship, not an error."""
        got = self.relationship(srv, 1, 4242)
        assert (got.actor_id, got.target_id, got.friends, got.actor_follows_target) == (1, 4242, False, False)

    def test_get_user(self, srv: Running) -> None:
        """GetUser: the profile and follower / following / friend counts;
        NOT_FOUND for an unknown user; a user without a profile has only its
        id."""
        user = srv.graph.GetUser(graph_service_pb2.GetUserRequest(user_id=1), timeout=10)
        assert (user.follower_count, user.following_count, user.friend_count) == (4, 3, 3)
        assert user.profile.user_id == 1 and user.profile.region_code == "GB"
        assert user.profile.age_band == profile_pb.AGE_BAND_ADULT
        bare = srv.graph.GetUser(graph_service_pb2.GetUserRequest(user_id=50), timeout=10)
        assert bare.profile.user_id == 50 and not bare.profile.HasField("age_band")
        with pytest.raises(grpc.RpcError) as err:
            srv.graph.GetUser(graph_service_pb2.GetUserRequest(user_id=4242), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


class TestExplain:
    explain = staticmethod(explain)

    @pytest.mark.parametrize("viewer,candidate,reason", [
        (1, 40, FR.FILTER_REASON_MESSAGE_PRIVACY),
        (1, 30, FR.FILTER_REASON_MINOR_ADULT_NOT_FRIENDS),
        (1, 42, FR.FILTER_REASON_BLOCKED),
        (1, 20, FR.FILTER_REASON_ACCOUNT_STATE),
        (1, 44, FR.FILTER_REASON_NOT_DISCOVERABLE),
        (1, 4242, FR.FILTER_REASON_MISSING_PROFILE),
        (CHILD, 31, FR.FILTER_REASON_UNDER_16),
    ], ids=["privacy", "minor", "blocked", "banned", "not_discoverable", "unknown", "under_16"])
    def test_names_the_removing_rule(self, srv: Running, viewer: int, candidate: int, reason: int) -> None:
        """ExplainSuggestion for a removed candidate names the rule and gives
        no rank."""
        got = self.explain(srv, viewer, candidate)
        assert reason in got.filter_reasons and got.rank == 0
        assert got.policy_version == "v1"

    def test_suggested_candidate(self, srv: Running) -> None:
        """A suggested candidate: the sources that found it, its rank and no
        filter reason."""
        got = self.explain(srv, 1, 12)
        assert got.rank >= 1 and list(got.filter_reasons) == []
        assert "friends_of_friends" in {s.source for s in got.sources}

    def test_guardian_removal_explained(self, srv: Running) -> None:
        """After a guardian removal the explanation names it."""
        link(srv, "g")
        controls(srv, "g", add_removed_contact_ids=[SAFE_FOR_CHILD])
        assert FR.FILTER_REASON_GUARDIAN_REMOVED_CONTACT in self.explain(srv, CHILD, SAFE_FOR_CHILD).filter_reasons

    def test_ineligible_viewer(self, srv: Running) -> None:
        """An under-16 viewer's explanation carries the viewer reason."""
        assert self.explain(srv, 31, 1).ineligible_reason == FR.FILTER_REASON_VIEWER_UNDER_16


# --- policy reload under load ----------------------------------------------------------


class TestPolicyReloadUnderLoad:
    def test_reload_while_hammering(self, cluster: Cluster) -> None:
        """Reloads (a good file, then a bad one) while threads hammer
        SuggestContacts and CheckMessaging: no request fails, responses
        carry the new policy_version once the reload returned, and the bad
        file keeps it."""
        r = cluster.start()
        stop = threading.Event()
        failures: list[BaseException] = []
        seen: list[tuple[float, str]] = []
        lock = threading.Lock()

        def hammer(kind: str) -> None:
            with grpc.insecure_channel(f"127.0.0.1:{r.server.port}") as ch:
                stub = suggestion_service_pb2_grpc.SuggestionServiceStub(ch)
                safety = safety_service_pb2_grpc.SafetyServiceStub(ch)
                while not stop.is_set():
                    try:
                        started = time.monotonic()
                        if kind == "suggest":
                            resp = stub.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(
                                user_id=1, page_size=20), timeout=10)
                            assert 12 in [s.user_id for s in resp.suggestions]
                        else:
                            resp = safety.CheckMessaging(safety_service_pb2.CheckMessagingRequest(
                                sender_id=1, recipient_id=2), timeout=10)
                            assert resp.allowed
                        with lock:
                            seen.append((started, resp.policy_version))
                    except BaseException as err:  # any failure fails the test
                        failures.append(err)

        threads = [threading.Thread(target=hammer, args=(k,)) for k in ("suggest", "suggest", "check")]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            cluster.policy.write_text(policy_text("v2"))
            assert reload_policy(r.state.safety) == "v2"
            reloaded = time.monotonic()
            time.sleep(0.3)
            cluster.policy.write_text('version = "v3"\n[age]\nmin_dm_band = "13_15"\n')
            assert reload_policy(r.state.safety) == "v2"
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert failures == []
        assert len(seen) > 20, "the load never got going"
        assert {v for _, v in seen} == {"v1", "v2"}
        assert {v for started, v in seen if started > reloaded} == {"v2"}
        assert suggest(r, 1).policy_version == "v2" and check(r, 1, 2).policy_version == "v2"
