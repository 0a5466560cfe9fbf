"""The safety engine: every rule once, vectorised over a batch of
candidates, used by both the suggestion path and the send path.

Orientation: the *viewer* is the one who would message (the suggestion's
viewer, the message's sender); a *candidate* is who would receive it.
Suggestion rules = every send rule + the suggestion-only rules, so a
suggested user can always be messaged (a property test checks).

Fail closed: unset age band, privacy or account state count as the most
restrictive value; a user without a profile is never suggested, never gets
suggestions and can neither send nor receive."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import numpy as np

from graph.model import (
    AccountState,
    AgeAssurance,
    AgeBand,
    Event,
    EventKind,
    InteractionType,
    MessagePrivacy,
    decode_region,
)
from graph.store import GraphStore

from .exposure import ImpressionLedger
from .guardian import Controls, GuardianRegistry, Messaging
from .policy import DAY, Policy, PolicyHolder, RegionRules
from .reasons import FilterReason

_WEAK_ASSURANCE = (AgeAssurance.UNSPECIFIED, AgeAssurance.DECLARED)


class Decision(IntEnum):
    """Mirrors contactgraph.v1.Decision."""

    UNSPECIFIED = 0
    ALLOW = 1
    ALLOW_AS_REQUEST = 2
    DENY = 3


def effective_bands(store: GraphStore, rows: np.ndarray) -> np.ndarray:
    """Age band per row as the rules see it (int8): a weakly assured profile
    that ever declared a younger band keeps the younger one; unset stays 0
    (the most restrictive)."""
    band = store.profiles.column("age_band")[rows]
    lowest = store.profiles.column("min_band")[rows]
    weak = np.isin(store.profiles.column("age_assurance")[rows], _WEAK_ASSURANCE)
    return np.where(weak & (lowest > 0) & (lowest < band), lowest, band).astype(np.int8)


class Context:
    """Facts about one viewer and a batch of candidate rows, computed once
    and only if a rule asks."""

    def __init__(self, engine: "SafetyEngine", store: GraphStore, policy: Policy, viewer: int,
                 rows: np.ndarray, now: float) -> None:
        self.engine = engine
        self.store = store
        self.policy = policy
        self.viewer = viewer
        self.rows = rows
        self.now = now

    def col(self, name: str) -> np.ndarray:
        return self.store.profiles.column(name)[self.rows]

    @cached_property
    def viewer_band(self) -> int:
        return int(effective_bands(self.store, np.array([self.viewer]))[0])

    @cached_property
    def viewer_minor(self) -> bool:
        return self.viewer_band != AgeBand.ADULT

    @cached_property
    def bands(self) -> np.ndarray:
        return effective_bands(self.store, self.rows)

    @cached_property
    def minor(self) -> np.ndarray:
        return self.bands != AgeBand.ADULT

    @cached_property
    def viewer_friends(self) -> np.ndarray:
        return self.store.friends_of(self.viewer)

    @cached_property
    def friends(self) -> np.ndarray:
        return np.isin(self.rows, self.viewer_friends)

    @cached_property
    def follows_viewer(self) -> np.ndarray:
        """Candidate follows the viewer."""
        return np.isin(self.rows, self.store.followers(self.viewer))

    @cached_property
    def rules(self) -> dict[str, np.ndarray]:
        """Per candidate, the stricter of viewer's and candidate's region
        values (arrays keyed by RegionRules field)."""
        viewer_code = decode_region(int(self.store.profiles.column("region")[self.viewer]))
        codes = self.col("region")
        out = {name: np.zeros(self.rows.shape[0], np.int64) for name in RegionRules.__dataclass_fields__}
        for code in np.unique(codes).tolist():
            rules = self.policy.pair(viewer_code, decode_region(int(code)))
            sel = codes == code
            for name in out:
                out[name][sel] = int(getattr(rules, name))
        return out

    @cached_property
    def viewer_rules(self) -> RegionRules:
        return self.policy.region(decode_region(int(self.store.profiles.column("region")[self.viewer])))

    @cached_property
    def guardian_controls(self) -> dict[int, Controls]:
        return self.engine.controls_by_row(self.store)

    def suspicious(self, rows: np.ndarray) -> np.ndarray:
        return self.engine.suspicious(self.store, self.policy, rows, self.now)


RuleFn = Callable[[Context], np.ndarray]


@dataclass(frozen=True)
class Rule:
    """A named rule: ``reject(ctx)`` is a bool per candidate, True to remove."""

    name: str
    reason: FilterReason
    reject: RuleFn


# -- send rules (also applied to every suggestion) ------------------------
def _self(ctx: Context) -> np.ndarray:
    return ctx.rows == ctx.viewer


def _missing_profile(ctx: Context) -> np.ndarray:
    return ~ctx.col("has_profile")


def _account_state(ctx: Context) -> np.ndarray:
    return ctx.col("account_state") != AccountState.ACTIVE


def _under_dm_age(ctx: Context) -> np.ndarray:
    # The pair's threshold (stricter region) binds both users: a viewer old
    # enough at home may still be too young for a stricter candidate's region.
    floor = ctx.rules["min_dm_band"]
    return (ctx.bands < floor) | (ctx.bands == AgeBand.UNSPECIFIED) | (ctx.viewer_band < floor)


def _blocked(ctx: Context) -> np.ndarray:
    return ctx.store.blocked_either(ctx.viewer, ctx.rows)


def _message_privacy(ctx: Context) -> np.ndarray:
    privacy = ctx.col("message_privacy")
    allowed = (privacy == MessagePrivacy.EVERYONE) | ((privacy == MessagePrivacy.FRIENDS) & ctx.friends)
    return ~allowed


def _adult_to_minor_not_followed(ctx: Context) -> np.ndarray:
    if ctx.viewer_minor:
        return np.zeros(ctx.rows.shape[0], bool)
    return ctx.minor & ~ctx.follows_viewer


def _suspicious_adult(ctx: Context) -> np.ndarray:
    # Whatever age the suspicious account claims: a suspicious viewer who
    # says they are a minor is still kept from minors.
    out = np.zeros(ctx.rows.shape[0], bool)
    if ctx.viewer_minor:
        out |= ctx.suspicious(ctx.rows)
    if bool(ctx.suspicious(np.array([ctx.viewer], np.int32))[0]):
        out |= ctx.minor
    return out


def _guardian_removed(ctx: Context) -> np.ndarray:
    controls = ctx.guardian_controls
    out = np.zeros(ctx.rows.shape[0], bool)
    if not controls:
        return out
    mine = controls.get(ctx.viewer)
    if mine is not None and mine.removed:
        out |= np.isin(ctx.store.ids.ext(ctx.rows), np.fromiter(mine.removed, np.int64))
    viewer_ext = ctx.store.ids.ext_of(ctx.viewer)
    for i in np.flatnonzero(np.isin(ctx.rows, np.fromiter(controls, np.int32, len(controls)))).tolist():
        if viewer_ext in controls[int(ctx.rows[i])].removed:
            out[i] = True
    return out


def _guardian_messaging(ctx: Context) -> np.ndarray:
    """A guardian's "who may message the child" limits the child's contacts
    both ways."""
    controls = ctx.guardian_controls
    out = np.zeros(ctx.rows.shape[0], bool)
    if not controls:
        return out
    mine = controls.get(ctx.viewer)
    if mine is not None:
        if mine.messaging == Messaging.NO_ONE:
            out[:] = True
        elif mine.messaging == Messaging.FRIENDS_ONLY:
            out |= ~ctx.friends
    for i in np.flatnonzero(np.isin(ctx.rows, np.fromiter(controls, np.int32, len(controls)))).tolist():
        level = controls[int(ctx.rows[i])].messaging
        if level == Messaging.NO_ONE or (level == Messaging.FRIENDS_ONLY and not ctx.friends[i]):
            out[i] = True
    return out


# -- suggestion-only rules ---------------------------------------------
def _under_suggestion_age(ctx: Context) -> np.ndarray:
    floor = ctx.rules["min_suggestion_band"]
    return (ctx.bands < floor) | (ctx.viewer_band < floor)


def _minor_adult_not_friends(ctx: Context) -> np.ndarray:
    # A floor in code: no adult-minor suggestions between strangers.
    return (ctx.minor != ctx.viewer_minor) & ~ctx.friends


def _minor_no_safe_connection(ctx: Context) -> np.ndarray:
    """A minor is suggested only after a minor-initiated follow or enough
    mutual friends who are minors themselves (never via adults)."""
    need = ctx.minor & ~ctx.friends & ~ctx.follows_viewer
    if not need.any():
        return need
    # Only friends whose profile says minor count: an adult, or a friend of
    # unknown age (no profile, unset band), is never a path to a minor.
    claimed = ctx.store.profiles.column("age_band")[ctx.viewer_friends]
    minor_friends = ctx.viewer_friends[(claimed > AgeBand.UNSPECIFIED) & (claimed < AgeBand.ADULT)]
    reach = ctx.store.gather_friends(minor_friends) if minor_friends.shape[0] else np.zeros(0, np.int32)
    counts = np.zeros(ctx.rows.shape[0], np.int64)
    if reach.shape[0]:
        uniq, n = np.unique(reach, return_counts=True)
        pos = np.searchsorted(uniq, ctx.rows)
        hit = (pos < uniq.shape[0]) & (uniq[np.minimum(pos, uniq.shape[0] - 1)] == ctx.rows)
        counts[hit] = n[pos[hit]]
    return need & (counts < ctx.rules["min_mutual_friends"])


def _muted(ctx: Context) -> np.ndarray:
    return ctx.store.muted(ctx.viewer, ctx.rows)


def _reported(ctx: Context) -> np.ndarray:
    s = ctx.store
    return np.isin(ctx.rows, s.reports.targets_of(ctx.viewer)) | np.isin(ctx.rows, s.reports.actors_about(ctx.viewer))


def _dismissed(ctx: Context) -> np.ndarray:
    since = ctx.now - ctx.policy.dismiss_days * DAY
    return np.isin(ctx.rows, ctx.store.dismissals.targets_of(ctx.viewer, since))


def _recently_unfollowed(ctx: Context) -> np.ndarray:
    since = ctx.now - ctx.policy.unfollow_days * DAY
    return np.isin(ctx.rows, ctx.store.unfollows.targets_of(ctx.viewer, since))


def _unblock_cooldown(ctx: Context) -> np.ndarray:
    since = ctx.now - ctx.policy.unblock_cooldown_days * DAY
    s = ctx.store
    return (np.isin(ctx.rows, s.unblocks.targets_of(ctx.viewer, since))
            | np.isin(ctx.rows, s.unblocks.actors_about(ctx.viewer, since)))


def _not_discoverable(ctx: Context) -> np.ndarray:
    # Unset means yes for adults and no for minors; friends already know
    # each other, so the setting guards only strangers.
    setting = ctx.col("discoverable")
    discoverable = (setting == 1) | ((setting == -1) & ~ctx.minor)
    return ~discoverable & ~ctx.friends


def _guardian_suggestions_off(ctx: Context) -> np.ndarray:
    controls = ctx.guardian_controls
    off = [row for row, c in controls.items() if not c.suggestions_enabled]
    if not off:
        return np.zeros(ctx.rows.shape[0], bool)
    return np.isin(ctx.rows, np.array(off, np.int32))


def _impression_fatigue(ctx: Context) -> np.ndarray:
    p = ctx.policy
    return ctx.engine.ledger.fatigued(ctx.store.ids.ext_of(ctx.viewer), ctx.store.ids.ext(ctx.rows),
                                      p.max_impressions, p.fatigue_window_days * DAY, ctx.now)


def _exposure_cap(ctx: Context) -> np.ndarray:
    # Stricter for minors: never above the adult cap, whatever the file says.
    adult_cap = ctx.policy.daily_cap_adult
    cap = np.where(ctx.minor, np.minimum(ctx.rules["daily_cap_minor"], adult_cap), adult_cap)
    return ctx.engine.ledger.exposures_today(ctx.store.ids.ext(ctx.rows), ctx.now) >= cap


SEND_RULES: tuple[Rule, ...] = (
    Rule("self", FilterReason.SELF, _self),
    Rule("missing_profile", FilterReason.MISSING_PROFILE, _missing_profile),
    Rule("account_state", FilterReason.ACCOUNT_STATE, _account_state),
    Rule("under_16", FilterReason.UNDER_16, _under_dm_age),
    Rule("blocked", FilterReason.BLOCKED, _blocked),
    Rule("message_privacy", FilterReason.MESSAGE_PRIVACY, _message_privacy),
    Rule("adult_to_minor_not_followed", FilterReason.ADULT_TO_MINOR_NOT_FOLLOWED, _adult_to_minor_not_followed),
    Rule("suspicious_adult", FilterReason.SUSPICIOUS_ADULT, _suspicious_adult),
    Rule("guardian_removed_contact", FilterReason.GUARDIAN_REMOVED_CONTACT, _guardian_removed),
    Rule("guardian_messaging", FilterReason.GUARDIAN_MESSAGING_RESTRICTED, _guardian_messaging),
)

SUGGESTION_ONLY_RULES: tuple[Rule, ...] = (
    Rule("under_suggestion_age", FilterReason.UNDER_16, _under_suggestion_age),
    Rule("minor_adult_not_friends", FilterReason.MINOR_ADULT_NOT_FRIENDS, _minor_adult_not_friends),
    Rule("minor_no_safe_connection", FilterReason.MINOR_NO_SAFE_CONNECTION, _minor_no_safe_connection),
    Rule("muted", FilterReason.MUTED, _muted),
    Rule("reported", FilterReason.REPORTED, _reported),
    Rule("dismissed", FilterReason.DISMISSED, _dismissed),
    Rule("recently_unfollowed", FilterReason.RECENTLY_UNFOLLOWED, _recently_unfollowed),
    Rule("unblock_cooldown", FilterReason.UNBLOCK_COOLDOWN, _unblock_cooldown),
    Rule("not_discoverable", FilterReason.NOT_DISCOVERABLE, _not_discoverable),
    Rule("guardian_suggestions_off", FilterReason.GUARDIAN_SUGGESTIONS_OFF, _guardian_suggestions_off),
    Rule("impression_fatigue", FilterReason.IMPRESSION_FATIGUE, _impression_fatigue),
    Rule("exposure_cap", FilterReason.EXPOSURE_CAP, _exposure_cap),
)

SUGGESTION_RULES: tuple[Rule, ...] = SEND_RULES + SUGGESTION_ONLY_RULES


@dataclass(frozen=True)
class SafetyVerdict:
    keep: np.ndarray  # bool per candidate
    first_reason: list[FilterReason | None]  # the first rule that removed each
    removed: dict[FilterReason, int]  # removals counted by first reason


@dataclass(frozen=True)
class MessagingDecision:
    decision: Decision
    reasons: list[FilterReason]

    @property
    def allowed(self) -> bool:
        return self.decision != Decision.DENY


class SafetyEngine:
    def __init__(self, policy: PolicyHolder, guardians: GuardianRegistry, ledger: ImpressionLedger) -> None:
        self.policy = policy
        self.guardians = guardians
        self.ledger = ledger
        self._controls_cache: tuple[int, int, dict[int, Controls]] | None = None
        self._suspicious_cache: dict[tuple[int, int, int], np.ndarray] = {}

    def observe(self, store: GraphStore, events: list[Event]) -> None:
        """Called after events are applied: counts a linked child's messages
        for the guardian overview and ends guardian links of a child whose
        profile now says adult."""
        for e in events:
            if e.kind == EventKind.INTERACTION and e.detail == InteractionType.MESSAGE:
                self.guardians.observe_message(e.actor, e.target, e.time)
            elif e.kind == EventKind.PROFILE and e.profile is not None and (
                    e.profile.age_band is not None or e.profile.age_assurance is not None):
                # A stronger assurance alone can make a weakly assured
                # former minor an adult.
                if self.guardians.links_of(e.actor):
                    row = store.row(e.actor)
                    minor = row >= 0 and int(effective_bands(store, np.array([row]))[0]) != AgeBand.ADULT
                    self.guardians.end_links_if_adult(e.actor, minor)

    # -- shared facts ---------------------------------------------------
    def controls_by_row(self, store: GraphStore) -> dict[int, Controls]:
        """Guardian controls in force, keyed by the child's row. Controls
        of a child who is now an adult no longer apply."""
        key = (id(store), self.guardians.version)
        cached = self._controls_cache
        if cached is not None and cached[:2] == key:
            return cached[2]
        out: dict[int, Controls] = {}
        for ext, controls in self.guardians.controlled_children().items():
            row = store.row(ext)
            if row >= 0 and int(effective_bands(store, np.array([row]))[0]) != AgeBand.ADULT:
                out[row] = controls
        self._controls_cache = (key[0], key[1], out)
        return out

    def suspicious(self, store: GraphStore, policy: Policy, rows: np.ndarray, now: float) -> np.ndarray:
        """Accounts blocked or reported by at least k distinct minors: blocks
        in force count whenever they were made (fail closed); reports count
        within the window."""
        out = np.zeros(rows.shape[0], bool)
        since = now - policy.suspicious_window_days * DAY
        for i, row in enumerate(rows.tolist()):
            accusers = np.union1d(store.blocks.in_(row), store.reports.actors_about(row, since))
            if accusers.shape[0] < policy.suspicious_min_minors:
                continue
            minors = int((effective_bands(store, accusers) != AgeBand.ADULT).sum())
            out[i] = minors >= policy.suspicious_min_minors
        return out

    # -- viewers and senders ---------------------------------------------
    def sender_problems(self, store: GraphStore, row: int) -> list[FilterReason]:
        """Why this user may not message anyone (empty if they may)."""
        if row < 0 or row >= len(store.profiles) or not store.profiles.column("has_profile")[row]:
            return [FilterReason.VIEWER_MISSING_PROFILE]
        problems = []
        if store.profiles.column("account_state")[row] != AccountState.ACTIVE:
            problems.append(FilterReason.VIEWER_ACCOUNT_STATE)
        band = int(effective_bands(store, np.array([row]))[0])
        region = decode_region(int(store.profiles.column("region")[row]))
        if band == AgeBand.UNSPECIFIED or band < self.policy.current.region(region).min_dm_band:
            problems.append(FilterReason.VIEWER_UNDER_16)
        return problems

    def viewer_ineligibility(self, store: GraphStore, row: int) -> FilterReason | None:
        """Why this viewer gets no suggestions at all, or None."""
        problems = self.sender_problems(store, row)
        if problems:
            return problems[0]
        band = int(effective_bands(store, np.array([row]))[0])
        region = decode_region(int(store.profiles.column("region")[row]))
        if band < self.policy.current.region(region).min_suggestion_band:
            return FilterReason.VIEWER_UNDER_16
        controls = self.controls_by_row(store).get(row)
        if controls is not None and not controls.suggestions_enabled:
            return FilterReason.GUARDIAN_SUGGESTIONS_OFF
        return None

    # -- judging ---------------------------------------------------------
    def _matrix(self, store: GraphStore, viewer: int, rows: np.ndarray, rules: tuple[Rule, ...],
                now: float) -> np.ndarray:
        """(len(rules), len(rows)) bool: which rule rejects which candidate.
        Rows outside the profile table fail closed as missing profiles."""
        rows = np.asarray(rows, np.int32)
        known = (rows >= 0) & (rows < len(store.profiles))
        ctx = Context(self, store, self.policy.current, viewer, np.where(known, rows, 0).astype(np.int32), now)
        out = np.zeros((len(rules), rows.shape[0]), bool)
        for i, rule in enumerate(rules):
            out[i] = rule.reject(ctx)
            if rule.reason == FilterReason.MISSING_PROFILE:
                out[i] |= ~known
        return out

    def filter_suggestions(self, store: GraphStore, viewer: int, rows: np.ndarray, now: float) -> SafetyVerdict:
        matrix = self._matrix(store, viewer, rows, SUGGESTION_RULES, now)
        rejected = matrix.any(axis=0)
        first_index = np.where(rejected, matrix.argmax(axis=0), -1)
        first = [SUGGESTION_RULES[i].reason if i >= 0 else None for i in first_index.tolist()]
        removed: dict[FilterReason, int] = {}
        for r in first:
            if r is not None:
                removed[r] = removed.get(r, 0) + 1
        return SafetyVerdict(~rejected, first, removed)

    def suggestion_reasons(self, store: GraphStore, viewer: int, row: int, now: float) -> list[FilterReason]:
        """Every rule that removes one candidate (for explanations)."""
        column = self._matrix(store, viewer, np.array([row], np.int32), SUGGESTION_RULES, now)[:, 0]
        return list(dict.fromkeys(SUGGESTION_RULES[i].reason for i in np.flatnonzero(column).tolist()))

    def check_messaging(self, store: GraphStore, sender_id: int, recipient_ids: list[int],
                        now: float) -> list[MessagingDecision]:
        """May the sender message each recipient now? One decision each, in
        order."""
        sender = store.row(sender_id)
        problems = self.sender_problems(store, sender)
        rows = np.array([store.row(r) for r in recipient_ids], np.int32)
        if problems:
            return [MessagingDecision(Decision.DENY, list(problems)) for _ in recipient_ids]
        unknown = rows < 0
        matrix = self._matrix(store, sender, np.where(unknown, len(store.profiles), rows), SEND_RULES, now)
        decisions = []
        for j, row in enumerate(rows.tolist()):
            reasons = list(dict.fromkeys(SEND_RULES[i].reason for i in np.flatnonzero(matrix[:, j]).tolist()))
            if reasons:
                decisions.append(MessagingDecision(Decision.DENY, reasons))
            elif self._established(store, sender, row, now):
                decisions.append(MessagingDecision(Decision.ALLOW, []))
            else:
                decisions.append(MessagingDecision(Decision.ALLOW_AS_REQUEST, []))
        return decisions

    @staticmethod
    def _established(store: GraphStore, sender: int, recipient: int, now: float) -> bool:
        """Friends, followed by the recipient, or the recipient wrote first:
        the message goes to the inbox, not to message requests."""
        return (store.is_friend(sender, recipient) or store.follows.contains(recipient, sender)
                or store.interactions.get(recipient, sender) is not None)
