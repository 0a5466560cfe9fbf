"""The send path (issue 8): "may this sender message this recipient now?"
answered by ``SafetyEngine.check_messaging`` from the same rules that
filter suggestions. Table-driven per send rule (decision and reason), then
hypothesis properties: the engine agrees with the independent oracle, and
whatever is suggested may be messaged under the same state.

Users: the sender is 1 and the recipient 2, adults with EVERYONE privacy,
ACTIVE, strangers, unless a row says otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from graph.model import Surface
from service.safety.engine import Decision
from service.safety.reasons import FilterReason
from tests.support.age_cases import STATE_IDS, STATES, age_cases
from tests.support.safety_oracle import Harness, build, world_plans

S, R = 1, 2
ALLOW, REQUEST, DENY = "ALLOW", "ALLOW_AS_REQUEST", "DENY"


def pair(policy: dict[str, Any] | None = None, *, sender: dict[str, Any] | None = None,
         recipient: dict[str, Any] | None = None) -> Harness:
    h = Harness(policy)
    h.profile(S, **(sender or {}))
    h.profile(R, **(recipient or {}))
    return h


def expect(h: Harness, decision: str, reason: str | None = None, *, sender: int = S, recipient: int = R) -> None:
    """Engine and oracle both decide ``decision``; a denial names ``reason``."""
    got = h.check(sender, recipient)
    assert h.world.message_decision(sender, recipient) == decision, "oracle"
    assert got.decision == Decision[decision], f"engine said {got}"
    assert got.allowed is (decision != DENY)
    if decision == DENY:
        assert got.reasons, "a denial always says why"
        if reason is not None:
            assert reason in [r.name for r in got.reasons]
    else:
        assert got.reasons == []


class TestDecision:
    @pytest.mark.parametrize("events,decision", [
        ([], REQUEST),
        ([("befriend", S, R)], ALLOW),
        ([("follow", R, S)], ALLOW),
        ([("follow", S, R)], REQUEST),
        ([("message", R, S)], ALLOW),
        ([("message", S, R)], REQUEST),
    ], ids=["strangers", "friends", "recipient_follows_sender", "sender_follows_recipient",
            "recipient_wrote_first", "sender_wrote_before"])
    def test_inbox_or_request(self, events: list[tuple[str, int, int]], decision: str) -> None:
        """ALLOW when the pair already talks (friends, the recipient follows
        the sender, or the recipient wrote first); a stranger's first
        message is ALLOW_AS_REQUEST."""
        h = pair()
        for kind, a, b in events:
            getattr(h, kind)(a, b)
        expect(h, decision)


class TestIdentity:
    def test_self(self) -> None:
        """Nobody messages themselves (FILTER_REASON_SELF)."""
        expect(pair(), DENY, "SELF", recipient=S)

    @pytest.mark.parametrize("who", ["recipient_unknown", "recipient_without_profile"])
    def test_missing_recipient(self, who: str) -> None:
        """A recipient the service knows nothing about fails closed
        (FILTER_REASON_MISSING_PROFILE)."""
        h = pair()
        if who == "recipient_without_profile":
            h.follow(S, 77)
        expect(h, DENY, "MISSING_PROFILE", recipient=77)

    @pytest.mark.parametrize("who", ["sender_unknown", "sender_without_profile"])
    def test_missing_sender(self, who: str) -> None:
        """A sender without a profile may message no one
        (FILTER_REASON_VIEWER_MISSING_PROFILE)."""
        h = pair()
        if who == "sender_without_profile":
            h.follow(77, R)
        expect(h, DENY, "VIEWER_MISSING_PROFILE", sender=77)


class TestBlocks:
    @pytest.mark.parametrize("blocker,blocked", [(S, R), (R, S)], ids=["sender_blocked", "recipient_blocked"])
    @pytest.mark.parametrize("friends", [False, True], ids=["strangers", "friends"])
    def test_block_either_way_denies(self, blocker: int, blocked: int, friends: bool) -> None:
        """A block in either direction denies both directions
        (FILTER_REASON_BLOCKED)."""
        h = pair()
        if friends:
            h.befriend(S, R)
        h.block(blocker, blocked)
        expect(h, DENY, "BLOCKED")
        expect(h, DENY, "BLOCKED", sender=R, recipient=S)

    def test_unblock_allows_again(self) -> None:
        """After an unblock the pair may message again at once (the
        cool-down is a suggestion rule, not a send rule)."""
        h = pair()
        h.block(R, S)
        h.unblock(R, S)
        expect(h, REQUEST)


class TestPrivacy:
    @pytest.mark.parametrize("privacy,friends,decision", [
        ("EVERYONE", False, REQUEST), ("FRIENDS", False, DENY), ("FRIENDS", True, ALLOW),
        ("NO_ONE", False, DENY), ("NO_ONE", True, DENY), (None, False, DENY), (None, True, DENY),
    ], ids=["everyone", "friends_stranger", "friends_friend", "no_one", "no_one_friend", "unset", "unset_friend"])
    def test_recipient_privacy(self, privacy: str | None, friends: bool, decision: str) -> None:
        """The recipient's message privacy: everyone / friends / no one;
        unset fails closed (FILTER_REASON_MESSAGE_PRIVACY)."""
        h = pair(recipient={"privacy": privacy})
        if friends:
            h.befriend(S, R)
        expect(h, decision, "MESSAGE_PRIVACY")

    def test_sender_privacy_is_not_the_recipients(self) -> None:
        """The sender's own NO_ONE setting limits who reaches the sender,
        not whom the sender may write to."""
        expect(pair(sender={"privacy": "NO_ONE"}), REQUEST)


class TestAccountStates:
    @pytest.mark.parametrize("state", STATES, ids=STATE_IDS)
    def test_recipient_state(self, state: str | None) -> None:
        """Only an ACTIVE recipient can be messaged (FILTER_REASON_ACCOUNT_STATE)."""
        expect(pair(recipient={"state": state}), REQUEST if state == "ACTIVE" else DENY, "ACCOUNT_STATE")

    @pytest.mark.parametrize("state", STATES, ids=STATE_IDS)
    def test_sender_state(self, state: str | None) -> None:
        """Only an ACTIVE sender may send (FILTER_REASON_VIEWER_ACCOUNT_STATE),
        even to friends."""
        h = pair(sender={"state": state})
        h.befriend(S, R)
        expect(h, ALLOW if state == "ACTIVE" else DENY, "VIEWER_ACCOUNT_STATE")


# For the DM-eligible bands: the decision per relationship. An adult may
# message a minor only if the minor follows the adult.
ELIGIBLE = {
    ("ADULT", "ADULT"): {"strangers": REQUEST, "recipient_follows": ALLOW, "sender_follows": REQUEST, "friends": ALLOW},
    ("ADULT", "16_17"): {"strangers": DENY, "recipient_follows": ALLOW, "sender_follows": DENY, "friends": ALLOW},
    ("16_17", "ADULT"): {"strangers": REQUEST, "recipient_follows": ALLOW, "sender_follows": REQUEST, "friends": ALLOW},
    ("16_17", "16_17"): {"strangers": REQUEST, "recipient_follows": ALLOW, "sender_follows": REQUEST, "friends": ALLOW},
}
# Anything under 16 or unset: DENY for the under-16 reason; between eligible
# bands a denial is the adult-to-minor rule's.
AGE_CASES = age_cases(ELIGIBLE, relations=("strangers", "recipient_follows", "sender_follows", "friends"),
                      refused=DENY, names=("sender", "recipient"), eligible_reason="ADULT_TO_MINOR_NOT_FOLLOWED")


class TestAges:
    @pytest.mark.parametrize("sender_band,recipient_band,relation,decision,reason", AGE_CASES)
    def test_age_matrix(self, sender_band: str | None, recipient_band: str | None, relation: str,
                        decision: str, reason: str) -> None:
        """Under 16 (or unset) neither sends nor receives; an adult may
        message a minor only if the minor follows the adult. Every band on
        both sides."""
        h = pair(sender={"age_band": sender_band}, recipient={"age_band": recipient_band})
        if relation == "recipient_follows":
            h.follow(R, S)
        elif relation == "sender_follows":
            h.follow(S, R)
        elif relation == "friends":
            h.befriend(S, R)
        expect(h, decision, reason)

    @pytest.mark.parametrize("sender,recipient,decision,reason", [
        ({"age_band": "16_17", "region": "KR"}, {"age_band": "ADULT"}, DENY, "VIEWER_UNDER_16"),
        ({"age_band": "ADULT"}, {"age_band": "16_17", "region": "KR"}, DENY, "UNDER_16"),
        ({"age_band": "16_17"}, {"age_band": "ADULT", "region": "KR"}, DENY, "UNDER_16"),
        ({"age_band": "ADULT", "region": "KR"}, {"age_band": "16_17"}, DENY, "UNDER_16"),
        ({"age_band": "ADULT", "region": "KR"}, {"age_band": "ADULT"}, ALLOW, None),
        ({"age_band": "16_17", "region": "JP"}, {"age_band": "ADULT"}, ALLOW, None),
        ({"age_band": "16_17", "region": "GB"}, {"age_band": "16_17", "region": "US"}, ALLOW, None),
    ], ids=["kr_minor_sends", "kr_minor_receives", "minor_to_kr_adult", "kr_adult_to_minor", "kr_adults",
            "jp_raises_only_suggestion_age", "gb_us_minors"])
    def test_region_dm_age(self, sender: dict[str, Any], recipient: dict[str, Any], decision: str,
                           reason: str | None) -> None:
        """A region raising min_dm_band to ADULT: its 16_17s neither send
        nor receive, and the stricter of two regions binds both users (the
        pairs are friends, so only the age rule can deny)."""
        h = pair({"regions": {"KR": {"min_dm_band": "ADULT"}, "JP": {"min_suggestion_band": "ADULT"}}},
                 sender=sender, recipient=recipient)
        h.befriend(S, R)
        expect(h, decision, reason)

    @pytest.mark.parametrize("assurance,decision", [
        ("DECLARED", DENY), (None, DENY), ("ESTIMATED", REQUEST), ("VERIFIED", REQUEST),
    ])
    def test_weak_assurance_recipient(self, assurance: str | None, decision: str) -> None:
        """A weakly assured adult who once declared 16_17 is a minor to an
        adult stranger (FILTER_REASON_ADULT_TO_MINOR_NOT_FOLLOWED)."""
        h = pair()
        h.update(R, age_band="16_17")
        h.update(R, age_band="ADULT", assurance=assurance)
        expect(h, decision, "ADULT_TO_MINOR_NOT_FOLLOWED")


class TestGuardianControls:
    @pytest.mark.parametrize("child,controls,friends,decision,reason", [
        (S, {"removed": (R,)}, True, DENY, "GUARDIAN_REMOVED_CONTACT"),
        (R, {"removed": (S,)}, True, DENY, "GUARDIAN_REMOVED_CONTACT"),
        (S, {"messaging": "FRIENDS_ONLY"}, False, DENY, "GUARDIAN_MESSAGING_RESTRICTED"),
        (R, {"messaging": "FRIENDS_ONLY"}, False, DENY, "GUARDIAN_MESSAGING_RESTRICTED"),
        (S, {"messaging": "FRIENDS_ONLY"}, True, ALLOW, None),
        (R, {"messaging": "FRIENDS_ONLY"}, True, ALLOW, None),
        (S, {"messaging": "NO_ONE"}, True, DENY, "GUARDIAN_MESSAGING_RESTRICTED"),
        (R, {"messaging": "NO_ONE"}, True, DENY, "GUARDIAN_MESSAGING_RESTRICTED"),
        (S, {"suggestions": False}, False, REQUEST, None),
        (R, {"suggestions": False}, False, REQUEST, None),
    ], ids=["sender_removed_recipient", "recipient_removed_sender", "sender_friends_only",
            "recipient_friends_only", "sender_friends_only_friend", "recipient_friends_only_friend",
            "sender_no_one", "recipient_no_one", "sender_suggestions_off", "recipient_suggestions_off"])
    def test_controls_on_either_side(self, child: int, controls: dict[str, Any], friends: bool, decision: str,
                                     reason: str | None) -> None:
        """Who may message the child and the contacts the guardian removed
        bind both directions; turning suggestions off does not stop
        messages. Both users are 16_17."""
        h = pair(sender={"age_band": "16_17"}, recipient={"age_band": "16_17"})
        if friends:
            h.befriend(S, R)
        h.guardian(child, **controls)
        expect(h, decision, reason)

    def test_change_takes_effect_on_next_check(self) -> None:
        """A guardian change applies to the very next check."""
        h = pair(sender={"age_band": "16_17"}, recipient={"age_band": "16_17"})
        expect(h, REQUEST)
        h.guardian(R, messaging="FRIENDS_ONLY")
        expect(h, DENY, "GUARDIAN_MESSAGING_RESTRICTED")


class TestSuspicious:
    @pytest.mark.parametrize("sender_band,recipient_band,suspect,decision", [
        ("ADULT", "16_17", S, DENY),
        ("16_17", "ADULT", R, DENY),
        ("16_17", "16_17", S, DENY),
        ("ADULT", "ADULT", S, ALLOW),
        ("16_17", "ADULT", S, ALLOW),
    ], ids=["suspect_adult_to_minor", "minor_to_suspect", "suspect_claiming_minor_to_minor",
            "suspect_to_adult", "suspect_minor_claims_to_adult"])
    def test_suspicious_and_minors(self, sender_band: str, recipient_band: str, suspect: int, decision: str) -> None:
        """An account reported by k distinct minors may not message minors
        (whatever age it claims), nor be written to by one; adults are
        unaffected (FILTER_REASON_SUSPICIOUS_ADULT). The pair are friends."""
        h = pair({"suspicious_min_minors": 2}, sender={"age_band": sender_band},
                 recipient={"age_band": recipient_band})
        h.befriend(S, R)
        for accuser in (300, 301):
            h.profile(accuser, age_band="13_15")
            h.report(accuser, suspect)
        expect(h, decision, "SUSPICIOUS_ADULT")


class TestSuggestionOnlyRules:
    @pytest.mark.parametrize("event", ["mute", "dismiss"])
    def test_do_not_deny_sends(self, event: str) -> None:
        """Mutes and dismissals shape suggestions; they do not stop a send."""
        h = pair()
        getattr(h, event)(S, R)
        expect(h, REQUEST)
        assert not h.keeps(S, R)


class TestBatch:
    def test_one_answer_per_recipient_in_order(self) -> None:
        """check_messaging answers every recipient in the order given,
        duplicates and unknown users included."""
        h = pair()
        h.profile(3, privacy="NO_ONE")
        h.profile(4)
        h.follow(4, S)
        h.block(5, S)
        h.profile(5)
        order = [4, 3, 2, 999, 5, 4, S]
        got = h.engine.check_messaging(h.store, S, order, h.now)
        assert [d.decision for d in got] == [Decision.ALLOW, Decision.DENY, Decision.ALLOW_AS_REQUEST,
                                             Decision.DENY, Decision.DENY, Decision.ALLOW, Decision.DENY]
        assert [h.world.message_decision(S, r) for r in order] == [d.decision.name for d in got]
        assert FilterReason.MISSING_PROFILE in got[3].reasons and FilterReason.SELF in got[6].reasons

    def test_ineligible_sender_denies_everyone(self) -> None:
        """A sender who may not message (under 16) is denied for every
        recipient with the viewer reason."""
        h = pair(sender={"age_band": "13_15"})
        got = h.engine.check_messaging(h.store, S, [R, R, 55], h.now)
        assert all(d.decision == Decision.DENY and d.reasons == [FilterReason.VIEWER_UNDER_16] for d in got)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestProperties:
    @PROPERTY
    @given(world_plans())
    def test_check_messaging_agrees_with_oracle(self, plan: dict[str, Any]) -> None:
        """Over random graphs, profiles, controls and event sequences, every
        ordered pair's decision equals the oracle's."""
        users = [*range(1, plan["n"] + 1), plan["n"] + 50]  # plus one unknown user

        def agree(h: Harness, sender: int) -> None:
            got = h.engine.check_messaging(h.store, sender, users, h.now)
            want = [h.world.message_decision(sender, r) for r in users]
            assert [d.decision.name for d in got] == want, f"sender {sender} at {h.now}"

        h = build(plan, on_check=agree)  # mid-sequence, at every "check" step
        for s in users:
            agree(h, s)

    @PROPERTY
    @given(world_plans())
    def test_suggested_implies_may_message(self, plan: dict[str, Any]) -> None:
        """Issue 8's key property: whatever is suggested (by Pipeline.suggest
        on either surface, or kept by filter_suggestions) may be messaged
        under the same state."""
        h = build(plan)
        pipeline = h.pipeline()
        rows = np.arange(h.store.n_rows, dtype=np.int32)
        for v in range(1, plan["n"] + 1):
            suggested: set[int] = set()
            for surface in (Surface.NEW_CONTACTS, Surface.SHARE_SHEET):
                suggested |= set(pipeline.suggest(v, surface, h.now).user_ids.tolist())
            row = h.row(v)
            if row >= 0 and h.engine.viewer_ineligibility(h.store, row) is None:
                verdict = h.engine.filter_suggestions(h.store, row, rows, h.now)
                suggested |= set(h.store.ids.ext(rows[verdict.keep]).tolist())
            if not suggested:
                continue
            targets = sorted(suggested)
            for c, d in zip(targets, h.engine.check_messaging(h.store, v, targets, h.now), strict=True):
                assert d.allowed, f"{c} suggested to {v} but {d}"
                assert h.world.may_message(v, c)
