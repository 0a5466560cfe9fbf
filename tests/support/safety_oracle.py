"""An independent checker for the safety rules, written from the rule text
(DESIGN.md "Safety policy" / "Guardian oversight", issues 4 and 8), not
from the engine: its answers never call ``service.safety`` or its helpers.

Two parts:

* ``World``: the raw facts -- profiles (with every age band a user ever
  declared), follows, blocks, mutes, reports / dismissals / unfollows /
  unblocks with times, messages, guardian controls, impressions and the
  policy values -- folded from the same event sequence the service sees,
  plus the oracle's answers: ``viewer_may_receive``, ``may_suggest``,
  ``may_message`` and ``message_decision``. Plain sets and dicts, one
  candidate at a time, no numpy.
* ``Harness``: loads the same facts into the real thing (a GraphStore, a
  SafetyEngine with a policy parsed from TOML, a GuardianRegistry, an
  ImpressionLedger and a Pipeline whose embedding search finds everyone), so
  a test can ask both and compare. The oracle's answers never read it.

Reading of the rule text (where it had to choose, it chose fail closed):

* Missing profile, unset age band, unset account state or unset message
  privacy: never suggested, never messaged, no suggestions.
* Effective age: a weakly assured profile (assurance unset or DECLARED) that
  ever declared a younger band keeps the youngest band it declared; an
  ESTIMATED or VERIFIED profile is taken at its word. Unset counts as a
  minor wherever "minor" protects someone.
* Uncertain age (issue 20): read each user the way stricter for the other
  one. The effective age above is the user as the one protected (contacted,
  suggested, its own age limits, guardian controls, caps, accusing). As the
  one who reaches out (sending, being suggested to a minor, being the friend
  through whom a minor is found) a user is read at the oldest band it ever
  declared if it is weakly assured, or if it ever declared a band younger
  than an earlier declaration (whatever its assurance); else at its band.
* Regions: for a pair, every threshold is the stricter of the two users'
  regions (higher minimum age, more mutual friends, lower minor cap), and it
  applies to *both* users of the pair.
* A minor is suggested (to anyone, when not already friends) only if the
  minor followed the viewer first, or the viewer and the minor share at
  least ``min_mutual_friends`` friends who are *known* minors (a declared
  band under 18): never through adults, nor through friends of unknown age.
* Suspicious: at least ``suspicious_min_minors`` distinct minors (unset age
  counts as a minor) blocked the account (a block in force, whenever made)
  or reported it within the window. Such an account, whatever age it
  claims, is never suggested to a minor and may not message one; a minor
  may not open a conversation with it either.
* Exposure cap: an adult candidate at most ``daily_cap_adult`` times a UTC
  day, a minor at most the stricter of the minor cap and the adult cap.
* Send decision: DENY if any send rule fails; ALLOW when the pair already
  talks (friends, the recipient follows the sender, or the recipient
  messaged the sender); otherwise ALLOW_AS_REQUEST.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DAY = 86400.0

BAND_RANK = {None: 0, "UNDER_13": 1, "13_15": 2, "16_17": 3, "ADULT": 4}
BANDS = ("UNDER_13", "13_15", "16_17", "ADULT")
PRIVACIES = ("EVERYONE", "FRIENDS", "NO_ONE")
STATES = ("ACTIVE", "DEACTIVATED", "SUSPENDED", "BANNED", "UNDER_REVIEW")
ASSURANCES = ("DECLARED", "ESTIMATED", "VERIFIED")
WEAK_ASSURANCE = (None, "DECLARED")
MESSAGING = ("PLATFORM_DEFAULT", "FRIENDS_ONLY", "NO_ONE")

# Every value a policy file carries; the harness always writes all of them,
# so the oracle never depends on the service's built-in defaults.
DEFAULT_POLICY: dict[str, Any] = {
    "version": "oracle-1",
    "unblock_cooldown_days": 30.0,
    "dismiss_days": 90.0,
    "unfollow_days": 30.0,
    "max_impressions": 5,
    "fatigue_window_days": 7.0,
    "daily_cap_adult": 1000,
    "suspicious_min_minors": 3,
    "suspicious_window_days": 30.0,
    "min_dm_band": "16_17",
    "min_suggestion_band": "16_17",
    "min_mutual_friends": 3,
    "daily_cap_minor": 50,
    # region code -> any of min_dm_band, min_suggestion_band,
    # min_mutual_friends, daily_cap_minor
    "regions": {},
}
REGION_KEYS = ("min_dm_band", "min_suggestion_band", "min_mutual_friends", "daily_cap_minor")


def policy_toml(policy: dict[str, Any]) -> str:
    """The policy as the TOML file the service reads."""
    p = {**DEFAULT_POLICY, **policy}
    lines = [
        f'version = "{p["version"]}"',
        "[windows]",
        f"unblock_cooldown_days = {float(p['unblock_cooldown_days'])!r}",
        f"dismiss_days = {float(p['dismiss_days'])!r}",
        f"unfollow_days = {float(p['unfollow_days'])!r}",
        "[fatigue]",
        f"max_impressions = {int(p['max_impressions'])}",
        f"window_days = {float(p['fatigue_window_days'])!r}",
        "[exposure]",
        f"daily_cap_adult = {int(p['daily_cap_adult'])}",
        f"daily_cap_minor = {int(p['daily_cap_minor'])}",
        "[minors]",
        f"min_mutual_friends = {int(p['min_mutual_friends'])}",
        f"suspicious_min_minors = {int(p['suspicious_min_minors'])}",
        f"suspicious_window_days = {float(p['suspicious_window_days'])!r}",
        "[age]",
        f'min_dm_band = "{p["min_dm_band"]}"',
        f'min_suggestion_band = "{p["min_suggestion_band"]}"',
    ]
    for code, over in sorted(p["regions"].items()):
        lines.append(f"[regions.{code}]")
        for key, value in over.items():
            lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines) + "\n"


@dataclass
class Prof:
    """One user's profile as the facts say; None means never set."""

    age_band: str | None = None
    declared: list[str] = field(default_factory=list)  # every band ever declared, in order
    assurance: str | None = None
    privacy: str | None = None
    state: str | None = None
    region: str | None = None
    discoverable: bool | None = None


@dataclass
class Guard:
    """The guardian controls in force on one child (strictest of guardians)."""

    suggestions: bool = True
    messaging: str = "PLATFORM_DEFAULT"
    removed: set[int] = field(default_factory=set)


@dataclass
class World:
    now: float
    policy: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_POLICY))
    profiles: dict[int, Prof] = field(default_factory=dict)
    follows: set[tuple[int, int]] = field(default_factory=set)
    blocks: set[tuple[int, int]] = field(default_factory=set)
    mutes: set[tuple[int, int]] = field(default_factory=set)
    reports: dict[tuple[int, int], float] = field(default_factory=dict)  # newest report time
    dismissals: dict[tuple[int, int], float] = field(default_factory=dict)
    unfollows: dict[tuple[int, int], float] = field(default_factory=dict)
    unblocks: dict[tuple[int, int], float] = field(default_factory=dict)
    messages: set[tuple[int, int]] = field(default_factory=set)  # sender, recipient
    guardians: dict[int, Guard] = field(default_factory=dict)
    impressions: list[tuple[int, int, float]] = field(default_factory=list)  # viewer, candidate, time

    # -- folding events -------------------------------------------------
    def apply(self, kind: str, actor: int, target: int = 0, when: float | None = None,
              profile: dict[str, Any] | None = None) -> None:
        """Fold one event the way the rule text describes the facts."""
        t = self.now if when is None else when
        pair = (actor, target)
        if kind == "follow":
            self.follows.add(pair)
        elif kind == "unfollow":
            if pair in self.follows:
                self.follows.discard(pair)
                self.unfollows[pair] = t
        elif kind == "block":
            self.blocks.add(pair)
        elif kind == "unblock":
            if pair in self.blocks:
                self.blocks.discard(pair)
                self.unblocks[pair] = t
        elif kind == "mute":
            self.mutes.add(pair)
        elif kind == "unmute":
            self.mutes.discard(pair)
        elif kind == "report":
            self.reports[pair] = max(t, self.reports.get(pair, t))
        elif kind == "dismiss":
            self.dismissals[pair] = max(t, self.dismissals.get(pair, t))
        elif kind == "message":
            self.messages.add(pair)
        elif kind == "profile":
            assert profile is not None
            p = self.profiles.setdefault(actor, Prof())
            for key, value in profile.items():
                if value is None:
                    continue
                if key == "age_band":
                    p.declared.append(value)
                setattr(p, key, value)
            if actor in self.guardians and not self.is_minor(actor):
                del self.guardians[actor]  # the link ends when the child becomes an adult
        else:
            raise ValueError(kind)

    def erase(self, u: int) -> None:
        """The user is gone: every fact naming them, and their guardian
        controls (their id in another child's removed list no longer
        matters: it can never act again)."""
        self.profiles.pop(u, None)
        self.guardians.pop(u, None)
        for pairs in (self.follows, self.blocks, self.mutes, self.messages):
            pairs -= {pair for pair in pairs if u in pair}
        for logged in (self.reports, self.dismissals, self.unfollows, self.unblocks):
            for pair in [pair for pair in logged if u in pair]:
                del logged[pair]

    # -- facts ------------------------------------------------------------
    def p(self, u: int) -> Prof | None:
        return self.profiles.get(u)

    def band(self, u: int) -> int:
        """Effective age rank (0 = unknown)."""
        p = self.p(u)
        if p is None or p.age_band is None:
            return 0
        rank = BAND_RANK[p.age_band]
        if p.assurance in WEAK_ASSURANCE and p.declared:
            rank = min(rank, min(BAND_RANK[b] for b in p.declared))
        return rank

    def is_minor(self, u: int) -> bool:
        """Anything but a (effectively) adult counts as a minor."""
        return self.band(u) != BAND_RANK["ADULT"]

    def reach_band(self, u: int) -> int:
        """Age rank of ``u`` where it reaches others (0 = unknown)."""
        p = self.p(u)
        if p is None or p.age_band is None:
            return 0
        ranks = [BAND_RANK[b] for b in p.declared]
        went_younger = any(later < max(ranks[:i]) for i, later in enumerate(ranks) if i)
        if p.assurance in WEAK_ASSURANCE or went_younger:
            return max(ranks)
        return BAND_RANK[p.age_band]

    def reaches_as_adult(self, u: int) -> bool:
        return self.reach_band(u) == BAND_RANK["ADULT"]

    def known_minor(self, u: int) -> bool:
        """A profile that itself says minor, and never an adult while its
        age is uncertain (for paths *through* a user)."""
        return 0 < self.reach_band(u) < BAND_RANK["ADULT"]

    def friends(self, a: int, b: int) -> bool:
        return (a, b) in self.follows and (b, a) in self.follows

    def friends_of(self, a: int) -> set[int]:
        return {y for (x, y) in self.follows if x == a and (y, x) in self.follows}

    def region_value(self, u: int, key: str) -> Any:
        p = self.p(u)
        region = p.region if p is not None else None
        over = self.policy["regions"].get(region or "", {})
        return over.get(key, self.policy[key])

    def pair_value(self, a: int, b: int, key: str) -> int:
        """The stricter of two users' region values (as a comparable int)."""
        va, vb = self.region_value(a, key), self.region_value(b, key)
        if key in ("min_dm_band", "min_suggestion_band"):
            return max(BAND_RANK[va], BAND_RANK[vb])
        if key == "min_mutual_friends":
            return max(int(va), int(vb))
        return min(int(va), int(vb))  # daily_cap_minor

    def suspicious(self, u: int) -> bool:
        since = self.now - self.policy["suspicious_window_days"] * DAY
        accusers = {a for (a, b) in self.blocks if b == u}
        accusers |= {a for (a, b), t in self.reports.items() if b == u and t >= since}
        accusers |= {a for (a, b), t in self.unblocks.items() if b == u and t >= since}
        minors = [a for a in accusers if self.is_minor(a)]
        return len(minors) >= self.policy["suspicious_min_minors"]

    def controls(self, u: int) -> Guard | None:
        """Guardian controls in force: only while the child is a minor."""
        g = self.guardians.get(u)
        return g if g is not None and self.is_minor(u) else None

    # -- answers -------------------------------------------------------------
    def _may_take_part(self, u: int) -> bool:
        p = self.p(u)
        return p is not None and p.state == "ACTIVE" and p.age_band is not None

    def viewer_may_receive(self, v: int) -> bool:
        """May this user get suggestions at all?"""
        if not self._may_take_part(v):
            return False
        band = self.band(v)
        if band < BAND_RANK[self.region_value(v, "min_dm_band")]:
            return False
        if band < BAND_RANK[self.region_value(v, "min_suggestion_band")]:
            return False
        g = self.controls(v)
        return g is None or g.suggestions

    def may_message(self, s: int, r: int) -> bool:
        """May ``s`` message ``r`` now (a request counts as allowed)?"""
        if s == r or not self._may_take_part(s) or not self._may_take_part(r):
            return False
        rp = self.p(r)
        assert rp is not None
        floor = self.pair_value(s, r, "min_dm_band")
        if self.band(s) < floor or self.band(r) < floor:
            return False
        if (s, r) in self.blocks or (r, s) in self.blocks:
            return False
        if not (rp.privacy == "EVERYONE" or (rp.privacy == "FRIENDS" and self.friends(s, r))):
            return False
        if self.reaches_as_adult(s) and self.is_minor(r) and (r, s) not in self.follows:
            return False
        if self.is_minor(s) and self.suspicious(r):
            return False
        if self.is_minor(r) and self.suspicious(s):
            return False
        for child, other in ((s, r), (r, s)):
            g = self.controls(child)
            if g is None:
                continue
            if other in g.removed or g.messaging == "NO_ONE":
                return False
            if g.messaging == "FRIENDS_ONLY" and not self.friends(s, r):
                return False
        return True

    def message_decision(self, s: int, r: int) -> str:
        if not self._may_take_part(s) or not self.may_message(s, r):
            return "DENY"
        if self.friends(s, r) or (r, s) in self.follows or (r, s) in self.messages:
            return "ALLOW"
        return "ALLOW_AS_REQUEST"

    def may_name(self, v: int, m: int) -> bool:
        """May ``m`` be counted or named to ``v`` as a friend in common with
        someone (issue 20, item 5)? Only if ``v`` could be shown ``m`` as a
        stranger: ``v``'s own friendship with ``m`` does not count. Rules
        about messaging (privacy setting, guardian messaging limits), about
        ``v``'s own history (mutes, reports, dismissals, impressions) and
        about introducing strangers (an adult friend may be named to a
        minor) say nothing about disclosing ``m`` and do not apply."""
        if v == m or not self._may_take_part(v) or not self._may_take_part(m):
            return False
        if self.band(v) < BAND_RANK[self.region_value(v, "min_dm_band")]:
            return False  # a viewer who may message no one is shown no one
        for key in ("min_dm_band", "min_suggestion_band"):
            floor = self.pair_value(v, m, key)
            if self.band(v) < floor or self.band(m) < floor:
                return False
        if (v, m) in self.blocks or (m, v) in self.blocks:
            return False
        if not self.is_minor(v) and self.is_minor(m):
            return False  # a minor is never named to an adult stranger
        if (self.is_minor(v) and self.suspicious(m)) or (self.is_minor(m) and self.suspicious(v)):
            return False
        for child, other in ((v, m), (m, v)):
            g = self.controls(child)
            if g is not None and other in g.removed:
                return False
        g = self.controls(m)
        if g is not None and not g.suggestions:
            return False
        mp = self.p(m)
        assert mp is not None
        return mp.discoverable if mp.discoverable is not None else not self.is_minor(m)

    def nameable_mutuals(self, v: int, c: int) -> set[int]:
        """Friends of both ``v`` and ``c`` that ``v`` may be told of."""
        return {m for m in self.friends_of(v) & self.friends_of(c) if self.may_name(v, m)}

    def may_suggest(self, v: int, c: int) -> bool:
        """May ``c`` be suggested to ``v`` now?"""
        if not self.viewer_may_receive(v) or not self.may_message(v, c):
            return False
        pol = self.policy
        now = self.now
        friends = self.friends(v, c)
        floor = self.pair_value(v, c, "min_suggestion_band")
        if self.band(v) < floor or self.band(c) < floor:
            return False
        if not friends and ((self.is_minor(v) and self.reaches_as_adult(c))
                            or (self.reaches_as_adult(v) and self.is_minor(c))):
            return False
        if self.is_minor(c) and not friends and (c, v) not in self.follows:
            mutual = self.friends_of(v) & self.friends_of(c)
            safe = [m for m in mutual if self.known_minor(m)]
            if len(safe) < self.pair_value(v, c, "min_mutual_friends"):
                return False
        if (v, c) in self.mutes:
            return False
        if (v, c) in self.reports or (c, v) in self.reports:
            return False
        if self.dismissals.get((v, c), -1e300) >= now - pol["dismiss_days"] * DAY:
            return False
        if self.unfollows.get((v, c), -1e300) >= now - pol["unfollow_days"] * DAY:
            return False
        since = now - pol["unblock_cooldown_days"] * DAY
        if self.unblocks.get((v, c), -1e300) >= since or self.unblocks.get((c, v), -1e300) >= since:
            return False
        cp = self.p(c)
        assert cp is not None
        discoverable = cp.discoverable if cp.discoverable is not None else not self.is_minor(c)
        if not discoverable and not friends:
            return False
        g = self.controls(c)
        if g is not None and not g.suggestions:
            return False
        window = now - pol["fatigue_window_days"] * DAY
        shown = sum(1 for (a, b, t) in self.impressions if a == v and b == c and t >= window)
        if shown >= pol["max_impressions"]:
            return False
        today = int(now // DAY)
        exposures = sum(1 for (_, b, t) in self.impressions if b == c and int(t // DAY) == today)
        cap = pol["daily_cap_adult"]
        if self.is_minor(c):
            cap = min(cap, self.pair_value(v, c, "daily_cap_minor"))
        return exposures < cap


# ---------------------------------------------------------------------------
# Harness: the same facts loaded into the real service. Nothing above reads
# anything below.
# ---------------------------------------------------------------------------
GUARDIAN_KEY = b"oracle-test-guardian-key-0123456789"
T0 = 1_750_000_000.0


class Harness:
    """A world and the service state built from it, kept in step: every
    call applies an event to both."""

    def __init__(self, policy: dict[str, Any] | None = None, now: float = T0) -> None:
        import tomllib

        from graph.clock import ManualClock
        from graph.config import GraphConfig
        from graph.store import GraphStore
        from service.safety.engine import SafetyEngine
        from service.safety.exposure import ImpressionLedger
        from service.safety.guardian import GuardianRegistry
        from service.safety.policy import PolicyHolder, parse_policy

        self.world = World(now=now, policy={**DEFAULT_POLICY, **(policy or {})})
        self.clock = ManualClock(now)
        self.store = GraphStore.empty(GraphConfig(), self.clock)
        self.toml = policy_toml(self.world.policy)
        self.holder = PolicyHolder(parse_policy(tomllib.loads(self.toml)))
        self.guardians = GuardianRegistry(GUARDIAN_KEY, self.clock)
        self.ledger = ImpressionLedger()
        self.engine = SafetyEngine(self.holder, self.guardians, self.ledger)
        self._n = 0
        self._guardian_of: dict[int, str] = {}

    # -- time -----------------------------------------------------------
    @property
    def now(self) -> float:
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.world.now = self.clock.now()

    # -- events ---------------------------------------------------------
    def _event(self, kind: str, actor: int, target: int = 0, profile: dict[str, Any] | None = None) -> None:
        from graph.model import (
            AccountState,
            AgeAssurance,
            AgeBand,
            Event,
            EventKind,
            InteractionType,
            MessagePrivacy,
            Profile,
            ReportCategory,
            Surface,
        )

        self._n += 1
        eid = f"e{self._n}"
        t = self.now
        if kind == "profile":
            assert profile is not None
            fields: dict[str, Any] = {}
            if profile.get("age_band") is not None:
                fields["age_band"] = {"UNDER_13": AgeBand.UNDER_13, "13_15": AgeBand.AGE_13_15,
                                      "16_17": AgeBand.AGE_16_17, "ADULT": AgeBand.ADULT}[profile["age_band"]]
            if profile.get("privacy") is not None:
                fields["message_privacy"] = MessagePrivacy[profile["privacy"]]
            if profile.get("state") is not None:
                fields["account_state"] = AccountState[profile["state"]]
            if profile.get("assurance") is not None:
                fields["age_assurance"] = AgeAssurance[profile["assurance"]]
            if profile.get("region") is not None:
                fields["region_code"] = profile["region"]
            if profile.get("discoverable") is not None:
                fields["discoverable"] = profile["discoverable"]
            event = Event(eid, t, EventKind.PROFILE, actor, profile=Profile(actor, **fields))
        elif kind == "message":
            event = Event(eid, t, EventKind.INTERACTION, actor, target, int(InteractionType.MESSAGE))
        elif kind == "report":
            event = Event(eid, t, EventKind.REPORT, actor, target, int(ReportCategory.HARASSMENT))
        elif kind == "dismiss":
            event = Event(eid, t, EventKind.DISMISS, actor, target, int(Surface.NEW_CONTACTS))
        else:
            event = Event(eid, t, EventKind[kind.upper()], actor, target)
        self.store.apply_batch([event])
        self.engine.observe(self.store, [event])
        self.world.apply(kind, actor, target, t, profile)

    def profile(self, uid: int, age_band: str | None = "ADULT", privacy: str | None = "EVERYONE",
                state: str | None = "ACTIVE", assurance: str | None = None, region: str | None = None,
                discoverable: bool | None = None) -> None:
        """Set the carried fields of a profile (None: not carried)."""
        self._event("profile", uid, profile={
            "age_band": age_band, "privacy": privacy, "state": state, "assurance": assurance,
            "region": region, "discoverable": discoverable})

    def update(self, uid: int, **fields: Any) -> None:
        """A partial profile update: only the given fields."""
        self._event("profile", uid, profile=fields)

    def follow(self, a: int, b: int) -> None:
        self._event("follow", a, b)

    def befriend(self, a: int, b: int) -> None:
        self._event("follow", a, b)
        self._event("follow", b, a)

    def unfollow(self, a: int, b: int) -> None:
        self._event("unfollow", a, b)

    def block(self, a: int, b: int) -> None:
        self._event("block", a, b)

    def unblock(self, a: int, b: int) -> None:
        self._event("unblock", a, b)

    def mute(self, a: int, b: int) -> None:
        self._event("mute", a, b)

    def unmute(self, a: int, b: int) -> None:
        self._event("unmute", a, b)

    def report(self, a: int, b: int) -> None:
        self._event("report", a, b)

    def dismiss(self, a: int, b: int) -> None:
        self._event("dismiss", a, b)

    def message(self, a: int, b: int) -> None:
        self._event("message", a, b)

    def erase(self, uid: int) -> None:
        """``erase_user``, as the server applies it: the store hides the user
        and the guardian records forget them."""
        from graph.model import Event, EventKind

        self._n += 1
        event = Event(f"e{self._n}", self.now, EventKind.ERASE_USER, uid)
        self.store.apply_batch([event])
        self.engine.observe(self.store, [event])
        self.guardians.forget_erased(self.store.erased_subset)
        self.world.erase(uid)

    def impression(self, viewer: int, candidate: int) -> None:
        """The service showed ``candidate`` to ``viewer`` now."""
        self.ledger.record(viewer, [candidate], [[]], self.now)
        self.world.impressions.append((viewer, candidate, self.now))

    # -- guardians ----------------------------------------------------------
    def guardian(self, child: int, *, suggestions: bool | None = None, messaging: str | None = None,
                 removed: tuple[int, ...] = (), guardian_id: str | None = None) -> None:
        """Link a guardian to ``child`` (once) and tighten its controls."""
        from service.safety.guardian import Messaging, issue_consent_token

        gid = guardian_id or self._guardian_of.get(child) or f"g-{child}"
        if gid not in self.guardians.links_of(child):
            token = issue_consent_token(GUARDIAN_KEY, gid, child, self.now)
            self.guardians.link(gid, child, token, child_known=True, child_is_minor=True)
            self._guardian_of[child] = gid
        self.guardians.set_controls(gid, child, child_is_minor=True, suggestions_enabled=suggestions,
                                    messaging=Messaging[messaging] if messaging else None,
                                    add_removed=list(removed))
        g = self.world.guardians.setdefault(child, Guard())
        if suggestions is not None:
            g.suggestions = g.suggestions and suggestions
        if messaging is not None and MESSAGING.index(messaging) > MESSAGING.index(g.messaging):
            g.messaging = messaging
        g.removed |= set(removed)

    # -- asking the service ---------------------------------------------------
    def row(self, uid: int) -> int:
        return self.store.row(uid)

    def search(self) -> Any:
        """A vector search in which everyone is everyone's neighbour, so every
        user is a candidate and only the safety rules decide."""
        import numpy as np

        from graph.ann import VectorSearch, build_index

        n = max(self.store.n_rows, 1)
        vectors = np.full((n, 8), 1 / np.sqrt(8), np.float32)
        return VectorSearch(vectors, build_index(vectors))

    def pipeline(self) -> Any:
        from service.pipeline import Pipeline

        return Pipeline(self.store, self.search(), safety=self.engine)

    def suggest(self, viewer: int, surface: Any = None) -> Any:
        from graph.model import Surface

        return self.pipeline().suggest(viewer, surface or Surface.NEW_CONTACTS, self.now)

    def suggested(self, viewer: int, surface: Any = None) -> set[int]:
        return {int(u) for u in self.suggest(viewer, surface).user_ids.tolist()}

    def keeps(self, viewer: int, candidate: int) -> bool:
        """filter_suggestions' verdict for one candidate (viewer eligibility
        included, as the pipeline applies it)."""
        import numpy as np

        v = self.row(viewer)
        if self.engine.viewer_ineligibility(self.store, v) is not None:
            return False
        verdict = self.engine.filter_suggestions(self.store, v, np.array([self.row(candidate)], np.int32), self.now)
        return bool(verdict.keep[0])

    def reasons(self, viewer: int, candidate: int) -> list[str]:
        rs = self.engine.suggestion_reasons(self.store, self.row(viewer), self.row(candidate), self.now)
        return [r.name for r in rs]

    def check(self, sender: int, recipient: int) -> Any:
        return self.engine.check_messaging(self.store, sender, [recipient], self.now)[0]



# ---------------------------------------------------------------------------
# Random worlds for the property tests: a plan is plain data (so hypothesis
# can shrink and print it); ``build`` replays it into a Harness.
# ---------------------------------------------------------------------------
PAIR_EVENTS = ("follow", "follow", "follow", "follow", "unfollow", "block", "unblock", "mute", "unmute", "report",
               "dismiss", "message")
STEPS = (0.0, 3600.0, DAY, 3 * DAY, 6 * DAY, 12 * DAY, 40 * DAY)
# Small windows and caps so that random sequences cross them.
PLAN_POLICIES: tuple[dict[str, Any], ...] = (
    {},
    {"unblock_cooldown_days": 2.0, "dismiss_days": 5.0, "unfollow_days": 5.0, "max_impressions": 2,
     "fatigue_window_days": 7.0, "daily_cap_adult": 3, "daily_cap_minor": 2, "min_mutual_friends": 1,
     "suspicious_min_minors": 2, "suspicious_window_days": 10.0,
     "regions": {"KR": {"min_dm_band": "ADULT"}, "FR": {"min_mutual_friends": 2},
                 "DE": {"daily_cap_minor": 1}, "JP": {"min_suggestion_band": "ADULT"}}},
    {"min_mutual_friends": 2, "suspicious_min_minors": 1, "daily_cap_adult": 2, "daily_cap_minor": 5,
     "max_impressions": 1, "regions": {"KR": {"min_dm_band": "ADULT", "min_mutual_friends": 1}}},
)


def world_plans(max_users: int = 8, max_events: int = 40) -> Any:
    """A hypothesis strategy of plans: {"n", "policy", "profiles", "events",
    "guardians", "final_step"}; events are (kind, user, other or fields,
    clock step before it)."""
    from hypothesis import strategies as st

    n_users = st.integers(min_value=3, max_value=max_users)

    def plan_for(n: int) -> Any:
        users = st.integers(min_value=1, max_value=n)
        # Mostly well-formed, active users, so that many pairs are allowed
        # and every rule gets to say no now and then. Hypothesis favours
        # (and shrinks towards) the first value of each list: the benign one.
        band = st.sampled_from(["ADULT", "16_17"] * 8 + ["13_15", "UNDER_13", None])
        profile = st.tuples(st.integers(min_value=0, max_value=11), st.fixed_dictionaries({
            "history": st.lists(st.sampled_from(["16_17", "ADULT", "13_15"]), max_size=1),
            "age_band": band,
            "assurance": st.sampled_from(["VERIFIED", "DECLARED", None, "ESTIMATED"]),
            "privacy": st.sampled_from(["EVERYONE"] * 12 + ["FRIENDS", "FRIENDS", "NO_ONE", None]),
            "state": st.sampled_from(["ACTIVE"] * 40 + ["BANNED", "SUSPENDED", "DEACTIVATED", "UNDER_REVIEW", None]),
            "region": st.sampled_from([None, None, "GB", "KR", "FR", "DE", "JP"]),
            "discoverable": st.sampled_from([True, None, True, False]),
        })).map(lambda t: None if t[0] == 11 else t[1])  # 1 in 12 users has no profile
        pair_event = st.tuples(st.sampled_from(PAIR_EVENTS), users, users, st.sampled_from(STEPS))
        impression = st.tuples(st.just("impression"), users, users, st.sampled_from(STEPS))
        profile_change = st.tuples(st.just("profile"), users, st.fixed_dictionaries({
            "age_band": st.sampled_from([None, "16_17", "ADULT"]),
            "assurance": st.sampled_from([None, "VERIFIED"]),
            "state": st.sampled_from([None] * 6 + ["ACTIVE", "BANNED"]),  # None: not carried
        }), st.sampled_from(STEPS))
        guardian = st.fixed_dictionaries({
            "child": users,
            "suggestions": st.sampled_from([None, None, False]),
            "messaging": st.sampled_from([None, None, "FRIENDS_ONLY", "NO_ONE"]),
            "removed": st.lists(users, max_size=2),
        })
        guardian_change = st.tuples(st.just("guardian"), users, guardian, st.sampled_from(STEPS))
        # "check": the test's on_check hook looks at this viewer mid-sequence.
        check = st.tuples(st.just("check"), users, st.just(0), st.sampled_from(STEPS))
        event = st.one_of(pair_event, pair_event, pair_event, pair_event, impression, profile_change,
                          guardian_change, check)
        return st.fixed_dictionaries({
            "n": st.just(n),
            "policy": st.sampled_from(range(len(PLAN_POLICIES))),
            "profiles": st.lists(profile, min_size=n, max_size=n),
            "events": st.lists(event, min_size=max_events // 4, max_size=max_events),
            "guardians": st.lists(guardian, max_size=3),
            "final_step": st.sampled_from(STEPS),
        })

    return n_users.flatmap(plan_for)


def _apply_guardian(h: Harness, child: int, g: dict[str, Any]) -> None:
    from service.safety.guardian import GuardianError

    if g["suggestions"] is None and g["messaging"] is None and not g["removed"]:
        return
    if not h.world.is_minor(child) or h.store.row(child) < 0:
        return  # guardians link to minors only
    # A loosening control is refused (and leaves the world as it was).
    with contextlib.suppress(GuardianError):
        h.guardian(child, suggestions=g["suggestions"], messaging=g["messaging"], removed=tuple(g["removed"]))


def build(plan: dict[str, Any], on_check: Callable[[Harness, int], None] | None = None) -> Harness:
    """Replay a plan: profiles, then the event sequence (with the clock
    moving; "check" steps call ``on_check(harness, viewer)``), then the
    remaining guardian links and controls, then a last clock step."""
    h = Harness(PLAN_POLICIES[plan["policy"]])
    for uid, prof in enumerate(plan["profiles"], start=1):
        if prof is None:
            continue
        for band in prof["history"]:
            h.update(uid, age_band=band)
        h.update(uid, **{k: v for k, v in prof.items() if k != "history"})
    for kind, a, b, step in plan["events"]:
        h.advance(step)
        if kind == "profile":
            if any(v is not None for v in b.values()):
                h.update(a, **b)
        elif kind == "guardian":
            _apply_guardian(h, a, b)
        elif kind == "check":
            if on_check is not None:
                on_check(h, a)
        elif kind == "impression":
            if a != b:
                h.impression(a, b)
        elif a != b:
            getattr(h, kind)(a, b)
    for g in plan["guardians"]:
        _apply_guardian(h, g["child"], g)
    h.advance(plan["final_step"])
    return h
