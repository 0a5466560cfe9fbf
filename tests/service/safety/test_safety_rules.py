"""One table-driven test per suggestion safety rule (DESIGN.md "Safety
policy", issue 4), both directions where the rule is symmetric.

Every row is asked three ways and all three must give the row's answer:
``SafetyEngine.filter_suggestions`` for the one candidate, the whole
``Pipeline.suggest`` (whose embedding search finds everyone, so only the
rules decide), and the independent oracle in ``safety_oracle``. A removed
candidate must also carry the row's reason code.

Users: the viewer is 1 and the candidate 2, adults with EVERYONE privacy,
ACTIVE, strangers, unless a row says otherwise."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from graph.model import Surface
from service.safety.reasons import FilterReason
from tests.support.age_cases import STATE_IDS, STATES, age_cases
from tests.support.safety_oracle import DAY, Harness

V, C = 1, 2


def expect(h: Harness, expected: bool, reason: str | None = None, *, viewer: int = V,
           candidate: int = C, surface: Surface = Surface.NEW_CONTACTS) -> None:
    """Engine, pipeline and oracle all say ``expected`` for (viewer,
    candidate); a refusal names ``reason`` (a FilterReason name)."""
    assert h.world.may_suggest(viewer, candidate) is expected, "oracle"
    assert h.keeps(viewer, candidate) is expected, f"filter_suggestions; reasons {h.reasons(viewer, candidate)}"
    ranked = h.suggest(viewer, surface)
    assert (candidate in ranked.user_ids.tolist()) is expected, "Pipeline.suggest"
    if not expected and reason is not None:
        ineligible = h.engine.viewer_ineligibility(h.store, h.row(viewer))
        if ineligible is not None:
            assert ineligible.name == reason
            assert ranked.ineligible is not None and ranked.ineligible.name == reason
        else:
            assert reason in h.reasons(viewer, candidate)


def pair(policy: dict[str, Any] | None = None, *, viewer: dict[str, Any] | None = None,
         candidate: dict[str, Any] | None = None) -> Harness:
    """A harness with the viewer's and the candidate's profiles set."""
    h = Harness(policy)
    h.profile(V, **(viewer or {}))
    h.profile(C, **(candidate or {}))
    return h


MINOR = {"age_band": "16_17", "discoverable": True}


def minor_pair(policy: dict[str, Any] | None = None) -> Harness:
    """Two discoverable 16_17 minors; the candidate followed the viewer
    first (the minor-initiated follow that makes them suggestible)."""
    h = pair(policy, viewer=MINOR, candidate=MINOR)
    h.follow(C, V)
    return h


class TestBaseline:
    @pytest.mark.parametrize("surface", [Surface.NEW_CONTACTS, Surface.SHARE_SHEET], ids=["new_contacts", "share"])
    def test_adult_strangers_are_suggested(self, surface: Surface) -> None:
        """Two active adult strangers with EVERYONE privacy may be suggested
        (the control every other table departs from)."""
        expect(pair(), True, surface=surface)


class TestSelf:
    @pytest.mark.parametrize("surface", [Surface.NEW_CONTACTS, Surface.SHARE_SHEET], ids=["new_contacts", "share"])
    def test_never_suggested_to_oneself(self, surface: Surface) -> None:
        """A user is never their own suggestion (FILTER_REASON_SELF)."""
        h = pair()
        h.message(V, V + 100)  # give the share sheet something to draw on
        h.profile(V + 100)
        expect(h, False, "SELF", candidate=V, surface=surface)


class TestBlocks:
    @pytest.mark.parametrize("blocker,blocked", [(V, C), (C, V)],
                             ids=["viewer_blocked_candidate", "candidate_blocked_viewer"])
    @pytest.mark.parametrize("friends", [False, True], ids=["strangers", "friends"])
    def test_block_either_way_hides(self, blocker: int, blocked: int, friends: bool) -> None:
        """A block in either direction removes the pair from each other's
        suggestions, friends or not (FILTER_REASON_BLOCKED)."""
        h = pair()
        if friends:
            h.befriend(V, C)
        h.block(blocker, blocked)
        expect(h, False, "BLOCKED")
        expect(h, False, "BLOCKED", viewer=C, candidate=V)


class TestUnblockCooldown:
    COOLDOWN = 2.0

    @pytest.mark.parametrize("who", ["viewer", "candidate"])
    @pytest.mark.parametrize("elapsed,expected", [
        (0.0, False), (2 * DAY - 1, False), (2 * DAY, False), (2 * DAY + 1, True), (40 * DAY, True),
    ], ids=["just_unblocked", "window_minus_1s", "window_exactly", "window_plus_1s", "long_after"])
    def test_suggestible_again_only_after_the_window(self, who: str, elapsed: float, expected: bool) -> None:
        """An unblock (by either side) keeps the pair apart until the
        configured cool-down has passed (FILTER_REASON_UNBLOCK_COOLDOWN)."""
        h = pair({"unblock_cooldown_days": self.COOLDOWN})
        a, b = (V, C) if who == "viewer" else (C, V)
        h.block(a, b)
        h.advance(3600)
        h.unblock(a, b)
        h.advance(elapsed)
        expect(h, expected, "UNBLOCK_COOLDOWN")
        expect(h, expected, "UNBLOCK_COOLDOWN", viewer=C, candidate=V)


class TestMutes:
    @pytest.mark.parametrize("events,expected", [
        ([("mute", V, C)], False),
        ([("mute", C, V)], True),
        ([("mute", V, C), ("unmute", V, C)], True),
    ], ids=["viewer_muted_candidate", "candidate_muted_viewer", "muted_then_unmuted"])
    def test_viewer_mute_hides(self, events: list[tuple[str, int, int]], expected: bool) -> None:
        """The viewer's mute hides the muted user from the viewer's
        suggestions (FILTER_REASON_MUTED); someone else's mute does not."""
        h = pair()
        for kind, a, b in events:
            getattr(h, kind)(a, b)
        expect(h, expected, "MUTED")

    def test_mute_does_not_stop_messaging(self) -> None:
        """Muting is a suggestion preference, not a send rule."""
        h = pair()
        h.mute(V, C)
        assert h.check(V, C).allowed and h.world.may_message(V, C)


class TestReports:
    @pytest.mark.parametrize("elapsed", [0.0, 400 * DAY], ids=["just_reported", "400_days_later"])
    @pytest.mark.parametrize("reporter,reported", [(V, C), (C, V)],
                             ids=["viewer_reported", "candidate_reported_viewer"])
    def test_report_hides_both_ways_for_good(self, reporter: int, reported: int, elapsed: float) -> None:
        """A report hides the reported user from the reporter for good, and
        the reporter from the reported user (no retaliation)
        (FILTER_REASON_REPORTED)."""
        h = pair({"dismiss_days": 1.0, "unfollow_days": 1.0})
        h.report(reporter, reported)
        h.advance(elapsed)
        expect(h, False, "REPORTED")
        expect(h, False, "REPORTED", viewer=C, candidate=V)


class TestAccountStates:
    @pytest.mark.parametrize("state", STATES, ids=STATE_IDS)
    def test_candidate_state(self, state: str | None) -> None:
        """Only ACTIVE candidates are suggested; banned, suspended,
        deactivated, under review and unset states never are
        (FILTER_REASON_ACCOUNT_STATE)."""
        h = pair(candidate={"state": state})
        expect(h, state == "ACTIVE", "ACCOUNT_STATE")

    @pytest.mark.parametrize("state", STATES, ids=STATE_IDS)
    def test_viewer_state(self, state: str | None) -> None:
        """A viewer who is not ACTIVE gets no suggestions at all
        (FILTER_REASON_VIEWER_ACCOUNT_STATE on the empty answer)."""
        h = pair(viewer={"state": state})
        expect(h, state == "ACTIVE", "VIEWER_ACCOUNT_STATE")

    def test_state_change_takes_effect(self) -> None:
        """A candidate banned after being suggestible is removed at once."""
        h = pair()
        expect(h, True)
        h.update(C, state="BANNED")
        expect(h, False, "ACCOUNT_STATE")


# Expected for viewer band x candidate band, for the DM-eligible bands
# (16_17 and ADULT), per relationship: a minor and an adult only as friends;
# a minor only with a minor-initiated follow (or friends).
ELIGIBLE = {
    ("ADULT", "ADULT"): {"strangers": True, "candidate_follows": True, "friends": True},
    ("ADULT", "16_17"): {"strangers": False, "candidate_follows": False, "friends": True},
    ("16_17", "ADULT"): {"strangers": False, "candidate_follows": False, "friends": True},
    ("16_17", "16_17"): {"strangers": False, "candidate_follows": True, "friends": True},
}
# Anything under 16 or unset: never, for the under-16 reason; between
# eligible bands a refusal's reason is checked by test_stranger_reason_codes.
AGE_CASES = age_cases(ELIGIBLE, relations=("strangers", "candidate_follows", "friends"), refused=False,
                      names=("viewer", "candidate"), eligible_reason=None)


class TestAgeBands:
    @pytest.mark.parametrize("viewer_band,candidate_band,relation,expected,reason", AGE_CASES)
    def test_age_matrix(self, viewer_band: str | None, candidate_band: str | None, relation: str,
                        expected: bool, reason: str | None) -> None:
        """Under 16 (or unset): no suggestions either way; a minor and an
        adult only if friends; a minor only after a minor-initiated follow
        (or friends). Every band on both sides."""
        h = pair(viewer={"age_band": viewer_band, "discoverable": True},
                 candidate={"age_band": candidate_band, "discoverable": True})
        if relation == "candidate_follows":
            h.follow(C, V)
        elif relation == "friends":
            h.befriend(V, C)
        expect(h, expected, reason)

    @pytest.mark.parametrize("viewer_band,candidate_band,reason", [
        ("ADULT", "16_17", "MINOR_ADULT_NOT_FRIENDS"),
        ("16_17", "ADULT", "MINOR_ADULT_NOT_FRIENDS"),
        ("16_17", "16_17", "MINOR_NO_SAFE_CONNECTION"),
    ], ids=["adult_viewer_minor_candidate", "minor_viewer_adult_candidate", "minor_strangers"])
    def test_stranger_reason_codes(self, viewer_band: str, candidate_band: str, reason: str) -> None:
        """Strangers across the age line are removed with the age reason."""
        h = pair(viewer={"age_band": viewer_band, "discoverable": True},
                 candidate={"age_band": candidate_band, "discoverable": True})
        expect(h, False, reason)


class TestMinorConnections:
    """A minor is suggested only with a minor-initiated follow or at least
    N mutual friends who are minors; never via adult friends (N = 2)."""

    POLICY: ClassVar[dict[str, Any]] = {"min_mutual_friends": 2}

    @pytest.mark.parametrize("mutuals,expected", [
        ([], False),
        (["16_17"], False),
        (["16_17", "16_17"], True),
        (["16_17", "13_15"], True),
        (["16_17", "16_17", "16_17"], True),
        (["ADULT", "ADULT"], False),
        (["ADULT", "ADULT", "ADULT", "ADULT"], False),
        (["16_17", "ADULT"], False),
        (["16_17", None], False),
        (["16_17", "no_profile"], False),
        (["16_17", "weak_adult_once_minor"], False),
    ], ids=["none", "one_minor", "two_minors", "minor_and_13_15", "three_minors", "two_adults", "four_adults",
            "minor_and_adult", "minor_and_unset_age", "minor_and_no_profile", "minor_and_weak_adult"])
    def test_mutual_minor_friends(self, mutuals: list[str | None], expected: bool) -> None:
        """Only friends in common whose own profile says minor count toward
        the threshold; adults and friends of unknown age never open a path
        (FILTER_REASON_MINOR_NO_SAFE_CONNECTION)."""
        h = pair(self.POLICY, viewer=MINOR, candidate=MINOR)
        for i, band in enumerate(mutuals):
            m = 100 + i
            if band == "weak_adult_once_minor":
                h.profile(m, age_band="16_17", assurance="DECLARED")
                h.update(m, age_band="ADULT")
            elif band != "no_profile":
                h.profile(m, age_band=band)
            h.befriend(V, m)
            h.befriend(C, m)
        expect(h, expected, "MINOR_NO_SAFE_CONNECTION")

    @pytest.mark.parametrize("follow,expected", [
        ((C, V), True), ((V, C), False),
    ], ids=["candidate_followed_viewer", "viewer_followed_candidate"])
    def test_minor_initiated_follow(self, follow: tuple[int, int], expected: bool) -> None:
        """The suggested minor must be the one who reached out (followed the
        viewer); the viewer's own one-way follow is not the minor's consent."""
        h = pair(self.POLICY, viewer=MINOR, candidate=MINOR)
        h.follow(*follow)
        expect(h, expected, "MINOR_NO_SAFE_CONNECTION")

    def test_adult_viewer_never_via_mutual_minors(self) -> None:
        """An adult is not suggested a minor stranger even with many minor
        friends in common."""
        h = pair(self.POLICY, viewer={"age_band": "ADULT"}, candidate=MINOR)
        for m in (100, 101, 102):
            h.profile(m, age_band="16_17")
            h.befriend(V, m)
            h.befriend(C, m)
        expect(h, False, "MINOR_ADULT_NOT_FRIENDS")


REGIONS = {"KR": {"min_dm_band": "ADULT"}, "JP": {"min_suggestion_band": "ADULT"},
           "FR": {"min_mutual_friends": 4}}


class TestRegionAgeAssurance:
    @pytest.mark.parametrize("viewer,candidate,relation,expected,reason", [
        # the region raising the DM age to ADULT: its 16_17s neither send nor receive
        ({"region": "KR", **MINOR}, MINOR, "candidate_follows", False, "VIEWER_UNDER_16"),
        (MINOR, {"region": "KR", **MINOR}, "candidate_follows", False, "UNDER_16"),
        ({"region": "KR", **MINOR}, {"region": "KR", **MINOR}, "friends", False, "VIEWER_UNDER_16"),
        # stricter of two regions binds both users of the pair
        (MINOR, {"region": "KR", "age_band": "ADULT"}, "friends", False, "UNDER_16"),
        ({"region": "KR", "age_band": "ADULT"}, MINOR, "friends", False, "UNDER_16"),
        ({"region": "KR", "age_band": "ADULT"}, {"age_band": "ADULT"}, "strangers", True, None),
        (MINOR, MINOR, "candidate_follows", True, None),
        ({"region": "GB", **MINOR}, {"region": "US", **MINOR}, "candidate_follows", True, None),
        # the region raising only the suggestion age
        ({"region": "JP", **MINOR}, MINOR, "friends", False, "VIEWER_UNDER_16"),
        (MINOR, {"region": "JP", **MINOR}, "friends", False, "UNDER_16"),
        ({"region": "JP", "age_band": "ADULT"}, MINOR, "friends", False, "UNDER_16"),
        ({"region": "JP", "age_band": "ADULT"}, {"age_band": "ADULT"}, "strangers", True, None),
    ], ids=["kr_minor_viewer", "kr_minor_candidate", "both_kr_minors", "minor_viewer_kr_adult",
            "kr_adult_viewer_minor_friend", "kr_adult_adult", "base_minors", "gb_us_minors",
            "jp_minor_viewer", "jp_minor_candidate", "jp_adult_minor_friend", "jp_adults"])
    def test_region_age(self, viewer: dict[str, Any], candidate: dict[str, Any], relation: str,
                        expected: bool, reason: str | None) -> None:
        """Per-region age thresholds; with two regions the stricter applies
        to both users."""
        h = pair({"regions": REGIONS}, viewer=viewer, candidate=candidate)
        if relation == "candidate_follows":
            h.follow(C, V)
        elif relation == "friends":
            h.befriend(V, C)
        expect(h, expected, reason)

    @pytest.mark.parametrize("viewer_region,candidate_region,mutuals,expected", [
        (None, None, 3, True), ("FR", None, 3, False), (None, "FR", 3, False), ("FR", None, 4, True),
    ], ids=["base_3", "viewer_fr_3", "candidate_fr_3", "viewer_fr_4"])
    def test_region_mutual_friends(self, viewer_region: str | None, candidate_region: str | None,
                                   mutuals: int, expected: bool) -> None:
        """The stricter region's min_mutual_friends applies to the pair."""
        h = pair({"regions": REGIONS}, viewer={**MINOR, "region": viewer_region},
                 candidate={**MINOR, "region": candidate_region})
        for m in range(100, 100 + mutuals):
            h.profile(m, age_band="16_17")
            h.befriend(V, m)
            h.befriend(C, m)
        expect(h, expected, "MINOR_NO_SAFE_CONNECTION")

    @pytest.mark.parametrize("assurance,history,expected", [
        ("DECLARED", ["16_17"], False),
        (None, ["16_17"], False),
        ("DECLARED", ["13_15"], False),
        ("ESTIMATED", ["16_17"], True),
        ("VERIFIED", ["16_17"], True),
        ("DECLARED", [], True),
    ], ids=["declared_once_16_17", "unset_once_16_17", "declared_once_13_15", "estimated_once_16_17",
            "verified_once_16_17", "declared_always_adult"])
    @pytest.mark.parametrize("side", ["candidate", "viewer"])
    def test_weak_assurance(self, assurance: str | None, history: list[str], expected: bool, side: str) -> None:
        """A weakly assured adult who once declared a minor band keeps minor
        protections (no adult stranger suggestions either way); a verified
        adult does not."""
        h = pair()
        who = C if side == "candidate" else V
        for band in history:
            h.update(who, age_band=band)
        h.update(who, age_band="ADULT", assurance=assurance)
        reason = ("VIEWER_UNDER_16" if side == "viewer" and history == ["13_15"]
                  else "UNDER_16" if history == ["13_15"] else "MINOR_ADULT_NOT_FRIENDS")
        expect(h, expected, reason)


class TestDiscoverable:
    @pytest.mark.parametrize("band,setting,relation,expected", [
        ("ADULT", None, "strangers", True),
        ("ADULT", True, "strangers", True),
        ("ADULT", False, "strangers", False),
        ("ADULT", False, "friends", True),
        ("16_17", None, "candidate_follows", False),
        ("16_17", True, "candidate_follows", True),
        ("16_17", False, "candidate_follows", False),
        ("16_17", None, "friends", True),
        ("16_17", False, "friends", True),
    ], ids=["adult_unset", "adult_yes", "adult_no", "adult_no_friends", "minor_unset", "minor_yes",
            "minor_no", "minor_unset_friends", "minor_no_friends"])
    def test_discoverable(self, band: str, setting: bool | None, relation: str, expected: bool) -> None:
        """The candidate's "suggest my account": unset means yes for adults
        and no for minors; friends are exempt (FILTER_REASON_NOT_DISCOVERABLE)."""
        h = pair(viewer={"age_band": band}, candidate={"age_band": band, "discoverable": setting})
        if relation == "friends":
            h.befriend(V, C)
        elif relation == "candidate_follows":
            h.follow(C, V)
        expect(h, expected, "NOT_DISCOVERABLE")


class TestMessagePrivacy:
    @pytest.mark.parametrize("privacy,friends,expected", [
        ("EVERYONE", False, True), ("FRIENDS", False, False), ("FRIENDS", True, True),
        ("NO_ONE", False, False), ("NO_ONE", True, False), (None, False, False), (None, True, False),
    ], ids=["everyone", "friends_stranger", "friends_friend", "no_one", "no_one_friend", "unset", "unset_friend"])
    def test_candidate_privacy(self, privacy: str | None, friends: bool, expected: bool) -> None:
        """Only users the viewer may message are suggested: the candidate's
        privacy EVERYONE, or FRIENDS for a friend; NO_ONE and unset never
        (FILTER_REASON_MESSAGE_PRIVACY)."""
        h = pair(candidate={"privacy": privacy})
        if friends:
            h.befriend(V, C)
        expect(h, expected, "MESSAGE_PRIVACY")


class TestGuardianControls:
    """Children are discoverable 16_17 minors; the candidate followed the
    viewer first, so without controls the candidate is suggested."""

    @pytest.mark.parametrize("child,controls,friends,expected,reason", [
        (V, {"suggestions": False}, False, False, "GUARDIAN_SUGGESTIONS_OFF"),
        (C, {"suggestions": False}, False, False, "GUARDIAN_SUGGESTIONS_OFF"),
        (V, {"removed": (C,)}, False, False, "GUARDIAN_REMOVED_CONTACT"),
        (C, {"removed": (V,)}, False, False, "GUARDIAN_REMOVED_CONTACT"),
        (V, {"removed": (999,)}, False, True, None),
        (V, {"messaging": "FRIENDS_ONLY"}, False, False, "GUARDIAN_MESSAGING_RESTRICTED"),
        (C, {"messaging": "FRIENDS_ONLY"}, False, False, "GUARDIAN_MESSAGING_RESTRICTED"),
        (V, {"messaging": "FRIENDS_ONLY"}, True, True, None),
        (C, {"messaging": "FRIENDS_ONLY"}, True, True, None),
        (V, {"messaging": "NO_ONE"}, True, False, "GUARDIAN_MESSAGING_RESTRICTED"),
        (C, {"messaging": "NO_ONE"}, True, False, "GUARDIAN_MESSAGING_RESTRICTED"),
        (V, {"messaging": "PLATFORM_DEFAULT"}, False, True, None),
    ], ids=["viewer_suggestions_off", "candidate_suggestions_off", "viewer_removed_candidate",
            "candidate_removed_viewer", "viewer_removed_someone_else", "viewer_friends_only",
            "candidate_friends_only", "viewer_friends_only_friend", "candidate_friends_only_friend",
            "viewer_no_one", "candidate_no_one", "viewer_platform_default"])
    def test_controls_on_either_side(self, child: int, controls: dict[str, Any], friends: bool,
                                     expected: bool, reason: str | None) -> None:
        """Guardian controls of either user of the pair apply."""
        h = minor_pair()
        if friends:
            h.follow(V, C)
        h.guardian(child, **controls)
        expect(h, expected, reason)

    def test_suggestions_off_viewer_gets_empty_explained_answer(self) -> None:
        """A child whose guardian turned suggestions off gets an empty
        answer whose reason says so, not an error."""
        h = minor_pair()
        h.guardian(V, suggestions=False)
        ranked = h.suggest(V)
        assert ranked.user_ids.shape[0] == 0
        assert ranked.ineligible == FilterReason.GUARDIAN_SUGGESTIONS_OFF
        assert not h.world.viewer_may_receive(V)

    @pytest.mark.parametrize("turns_adult", [
        [{"age_band": "ADULT", "assurance": "VERIFIED"}],
        [{"age_band": "ADULT"}, {"assurance": "VERIFIED"}],
    ], ids=["verified_adult_in_one_event", "declared_adult_then_verified"])
    def test_controls_lapse_when_child_becomes_adult(self, turns_adult: list[dict[str, Any]]) -> None:
        """Once the child's profile makes them an adult (a weakly assured
        adult who was a minor is one only when verified), the links end and
        the controls no longer apply."""
        h = pair(viewer={"age_band": "16_17", "assurance": "DECLARED"})
        h.guardian(V, suggestions=False)
        expect(h, False, "GUARDIAN_SUGGESTIONS_OFF")
        for update in turns_adult:
            assert h.guardians.links_of(V), "the link ended too early"
            h.update(V, **update)
        assert h.guardians.links_of(V) == {}
        expect(h, True)

    def test_two_guardians_strictest_wins(self) -> None:
        """With two guardians, the strictest of their controls applies."""
        h = minor_pair()
        h.follow(V, C)
        h.guardian(V, messaging="FRIENDS_ONLY", guardian_id="mum")
        h.guardian(V, messaging="NO_ONE", guardian_id="dad")
        expect(h, False, "GUARDIAN_MESSAGING_RESTRICTED")


class TestDismissals:
    WINDOW = 10.0

    @pytest.mark.parametrize("elapsed,expected", [
        (0.0, False), (10 * DAY - 1, False), (10 * DAY, False), (10 * DAY + 1, True),
    ], ids=["just_dismissed", "window_minus_1s", "window_exactly", "window_plus_1s"])
    def test_dismissed_stays_away_for_the_window(self, elapsed: float, expected: bool) -> None:
        """A dismissed suggestion stays away for the configured time
        (FILTER_REASON_DISMISSED)."""
        h = pair({"dismiss_days": self.WINDOW})
        h.dismiss(V, C)
        h.advance(elapsed)
        expect(h, expected, "DISMISSED")

    def test_dismissal_is_the_viewers_own(self) -> None:
        """The candidate dismissing the viewer does not hide the candidate."""
        h = pair({"dismiss_days": self.WINDOW})
        h.dismiss(C, V)
        expect(h, True)
        expect(h, False, "DISMISSED", viewer=C, candidate=V)


class TestUnfollows:
    WINDOW = 5.0

    @pytest.mark.parametrize("elapsed,expected", [
        (0.0, False), (5 * DAY - 1, False), (5 * DAY, False), (5 * DAY + 1, True),
    ], ids=["just_unfollowed", "window_minus_1s", "window_exactly", "window_plus_1s"])
    def test_unfollowed_not_resuggested_within_the_window(self, elapsed: float, expected: bool) -> None:
        """An unfollowed user is not re-suggested to the unfollower for the
        configured time (FILTER_REASON_RECENTLY_UNFOLLOWED)."""
        h = pair({"unfollow_days": self.WINDOW})
        h.follow(V, C)
        h.advance(DAY)
        h.unfollow(V, C)
        h.advance(elapsed)
        expect(h, expected, "RECENTLY_UNFOLLOWED")

    def test_unfollow_without_follow_is_nothing(self) -> None:
        """An unfollow of someone never followed records nothing."""
        h = pair({"unfollow_days": self.WINDOW})
        h.unfollow(V, C)
        expect(h, True)


class TestImpressionFatigue:
    @pytest.mark.parametrize("shown,age_days,expected", [
        (2, 0.0, True), (3, 0.0, False), (3, 6.0, False), (3, 7.5, True), (10, 8.0, True),
    ], ids=["below_max", "at_max", "at_max_6_days_ago", "at_max_outside_window", "many_long_ago"])
    def test_fatigue_after_max_impressions(self, shown: int, age_days: float, expected: bool) -> None:
        """After max_impressions shows within the window the candidate rests
        (FILTER_REASON_IMPRESSION_FATIGUE); older shows do not count."""
        h = pair({"max_impressions": 3, "fatigue_window_days": 7.0})
        for _ in range(shown):
            h.impression(V, C)
        h.advance(age_days * DAY)
        expect(h, expected, "IMPRESSION_FATIGUE")

    @pytest.mark.parametrize("max_impressions", [16, 20, 40])
    def test_fatigue_above_the_ledgers_default_memory(self, max_impressions: int) -> None:
        """A policy allowing more shows than the ledger keeps by default
        still fatigues at max_impressions (each show follows a suggest call,
        as in the service)."""
        h = pair({"max_impressions": max_impressions, "fatigue_window_days": 7.0})
        for i in range(max_impressions):
            assert h.keeps(V, C), f"fatigued after only {i} shows"
            h.impression(V, C)
        expect(h, False, "IMPRESSION_FATIGUE")

    def test_fatigue_is_per_viewer(self) -> None:
        """Another viewer's impressions do not tire this viewer."""
        h = pair({"max_impressions": 2})
        h.profile(3)
        h.impression(3, C)
        h.impression(3, C)
        expect(h, True)
        expect(h, False, "IMPRESSION_FATIGUE", viewer=3)


class TestExposureCap:
    @pytest.mark.parametrize("candidate_is_minor,exposures,expected", [
        (False, 2, True), (False, 3, False), (True, 1, True), (True, 2, False),
    ], ids=["adult_below_cap", "adult_at_cap", "minor_below_cap", "minor_at_cap"])
    def test_daily_cap_stricter_for_minors(self, candidate_is_minor: bool, exposures: int, expected: bool) -> None:
        """No one is pushed to more than daily_cap_adult viewers a day, a
        minor to no more than daily_cap_minor (FILTER_REASON_EXPOSURE_CAP)."""
        policy = {"daily_cap_adult": 3, "daily_cap_minor": 2}
        h = minor_pair(policy) if candidate_is_minor else pair(policy)
        for other in range(100, 100 + exposures):
            h.impression(other, C)
        expect(h, expected, "EXPOSURE_CAP")

    def test_cap_resets_next_day(self) -> None:
        """Exposure counts are per UTC day."""
        h = pair({"daily_cap_adult": 1})
        h.impression(100, C)
        expect(h, False, "EXPOSURE_CAP")
        h.advance(DAY)
        expect(h, True)

    @pytest.mark.parametrize("exposures,expected", [(1, True), (2, False)])
    def test_minor_cap_never_above_adult_cap(self, exposures: int, expected: bool) -> None:
        """A file setting the minor cap above the adult cap does not make
        minors more exposed than adults."""
        h = minor_pair({"daily_cap_adult": 2, "daily_cap_minor": 5})
        for other in range(100, 100 + exposures):
            h.impression(other, C)
        expect(h, expected, "EXPOSURE_CAP")

    def test_region_minor_cap(self) -> None:
        """The stricter region's minor cap applies."""
        h = minor_pair({"daily_cap_minor": 10, "regions": {"DE": {"daily_cap_minor": 1}}})
        h.update(C, region="DE")
        h.impression(100, C)
        expect(h, False, "EXPOSURE_CAP")


S = 50  # the possibly suspicious account


class TestSuspiciousAdults:
    """k = 3 distinct minors within 30 days."""

    POLICY: ClassVar[dict[str, Any]] = {"suspicious_min_minors": 3, "suspicious_window_days": 30.0}

    def accused(self, accusations: list[tuple[str, str]], *, s_band: str = "ADULT",
                elapsed: float = 0.0) -> Harness:
        """Minor viewer V; S (adult by default) is V's friend, so only the
        suspicious rule can keep S away; each accusation is (how, band)."""
        h = pair(self.POLICY, viewer={"age_band": "16_17"})
        h.profile(S, age_band=s_band, discoverable=True)
        h.befriend(V, S)
        for i, (how, band) in enumerate(accusations):
            a = 200 + i if how != "same_minor_again" else 200
            if how != "same_minor_again":
                h.profile(a, age_band=band)
            if how == "lifted_block":
                h.block(a, S)
                h.unblock(a, S)
            else:
                getattr(h, "block" if how == "block" else "report")(a, S)
        h.advance(elapsed)
        return h

    @pytest.mark.parametrize("accusations,elapsed,expected", [
        ([("report", "16_17")] * 2, 0.0, True),
        ([("report", "16_17")] * 3, 0.0, False),
        ([("report", "13_15"), ("report", "UNDER_13"), ("report", "16_17")], 0.0, False),
        ([("block", "16_17")] * 3, 0.0, False),
        ([("block", "16_17"), ("block", "16_17"), ("report", "16_17")], 0.0, False),
        ([("report", "ADULT")] * 3, 0.0, True),
        ([("report", "16_17"), ("report", "16_17"), ("report", "ADULT")], 0.0, True),
        ([("report", "16_17"), ("same_minor_again", ""), ("same_minor_again", "")], 0.0, True),
        ([("report", "16_17")] * 3, 31 * DAY, True),
        ([("report", None)] * 3, 0.0, False),
        ([("block", "16_17")] * 3, 31 * DAY, False),
        ([("lifted_block", "16_17")] * 3, 0.0, False),
        ([("lifted_block", "13_15"), ("block", "16_17"), ("report", "16_17")], 0.0, False),
        ([("lifted_block", "16_17")] * 3, 31 * DAY, True),
    ], ids=["two_minors", "three_minors", "three_young_minors", "three_blocks", "blocks_and_report",
            "three_adults", "two_minors_one_adult", "one_minor_three_times", "reports_outside_window",
            "unknown_age_accusers_fail_closed", "blocks_in_force_outside_window", "three_lifted_blocks",
            "lifted_block_block_and_report", "lifted_blocks_outside_window"])
    def test_never_suggested_to_minors(self, accusations: list[tuple[str, str]], elapsed: float,
                                       expected: bool) -> None:
        """An account blocked or reported by at least k distinct minors in the
        window is never suggested to a minor, even a friend
        (FILTER_REASON_SUSPICIOUS_ADULT)."""
        h = self.accused(accusations, elapsed=elapsed)
        expect(h, expected, "SUSPICIOUS_ADULT", candidate=S)
        assert h.check(S, V).allowed is expected
        assert h.world.may_message(S, V) is expected

    @pytest.mark.parametrize("claimed", ["ADULT", "16_17"])
    def test_whatever_age_they_claim(self, claimed: str) -> None:
        """A suspicious account claiming to be a minor is still kept from
        minors."""
        h = self.accused([("report", "16_17")] * 3, s_band=claimed)
        expect(h, False, "SUSPICIOUS_ADULT", candidate=S)
        assert not h.check(S, V).allowed

    def test_still_suggested_to_adults(self) -> None:
        """The rule protects minors; adults still see the account."""
        h = self.accused([("report", "16_17")] * 3)
        h.profile(60)
        expect(h, True, viewer=60, candidate=S)

    @pytest.mark.parametrize("claimed", ["ADULT", "16_17"])
    def test_suspicious_viewer_gets_no_minors(self, claimed: str) -> None:
        """Seen from the suspicious side, whatever age it claims: no minor
        is suggested to it."""
        h = self.accused([("report", "16_17")] * 3, s_band=claimed)
        expect(h, False, "SUSPICIOUS_ADULT", viewer=S, candidate=V)


class TestIneligibleViewers:
    @pytest.mark.parametrize("setup,reason", [
        ("unknown", "VIEWER_MISSING_PROFILE"),
        ("no_profile", "VIEWER_MISSING_PROFILE"),
        ("unset_band", "VIEWER_UNDER_16"),
        ("under_13", "VIEWER_UNDER_16"),
        ("13_15", "VIEWER_UNDER_16"),
        ("banned", "VIEWER_ACCOUNT_STATE"),
        ("region_suggestion_age_adult", "VIEWER_UNDER_16"),
        ("guardian_off", "GUARDIAN_SUGGESTIONS_OFF"),
    ])
    def test_empty_answer_with_reason(self, setup: str, reason: str) -> None:
        """A viewer who may not receive suggestions gets an empty answer
        that says why (Ranked.ineligible), never an error."""
        h = Harness({"regions": {"JP": {"min_suggestion_band": "ADULT"}}})
        h.profile(C)
        viewer = V
        if setup == "unknown":
            viewer = 12345
        elif setup == "no_profile":
            h.follow(V, C)  # the viewer exists in the graph, without a profile
        elif setup == "unset_band":
            h.profile(V, age_band=None)
        elif setup == "under_13":
            h.profile(V, age_band="UNDER_13")
        elif setup == "13_15":
            h.profile(V, age_band="13_15")
        elif setup == "banned":
            h.profile(V, state="BANNED")
        elif setup == "region_suggestion_age_adult":
            h.profile(V, age_band="16_17", region="JP")
        elif setup == "guardian_off":
            h.profile(V, age_band="16_17")
            h.guardian(V, suggestions=False)
        ranked = h.suggest(viewer)
        assert ranked.user_ids.shape[0] == 0
        assert ranked.ineligible is not None and ranked.ineligible.name == reason
        assert not h.world.viewer_may_receive(viewer)


class TestImpressionLedgerMemory:
    def test_sweep_forgets_what_no_window_reads(self) -> None:
        """The ledger forgets impressions older than its retention, so its
        memory follows the window's traffic, not the process's age; recent
        impressions survive the sweep and still fatigue."""
        import numpy as np

        from service.safety.exposure import ImpressionLedger

        ledger = ImpressionLedger(retention_s=DAY, sweep_every=10)
        ledger.record(1, [2, 3, 4], [[], [], []], 0.0)
        ledger.record(1, [5], [[]], 2 * DAY)
        ledger.record(6, list(range(100, 110)), [[]] * 10, 2 * DAY)  # triggers a sweep
        assert ledger.size() == 11
        assert ledger.fatigued(6, np.array([100, 200]), 1, DAY, 2 * DAY).tolist() == [True, False]
