"""The safety engine: every rule once, used by both the suggestion path and
the send path. The rules themselves live in ``service/safety/rules/`` (one
family per file, assembled into the rule tables there); what they read is
in ``service/safety/context.py``; this module runs them.

Orientation: the *viewer* is the one who would message (the suggestion's
viewer, the message's sender); a *candidate* is who would receive it.
Suggestion rules = every send rule + the suggestion-only rules, so a
suggested user can always be messaged (a property test checks).

Fail closed: unset age band, privacy or account state count as the most
restrictive value; a user without a profile is never suggested, never gets
suggestions and can neither send nor receive.

Speed. A rule is vectorised over a batch of candidate rows; a send rule
also has a scalar form for one (sender, recipient) pair, because most
send-time checks name one recipient and numpy's per-call overhead would
dominate them. The two forms sit side by side in each rule's file and
``tests/service/safety/test_safety_fastpath.py`` checks on random worlds that they agree
on every pair. What the rules read about the viewer is gathered once per
request in ``Viewer``, so the pipeline can filter its ranked candidates in
small batches ("filter and take") without paying for it again."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from graph.model import Event, EventKind, InteractionType, decode_region
from graph.store import GraphStore
from service.safety.ages import (
    ADULT,
    UNSET_BAND,
    age_reading_one,
    age_readings,
    effective_band,
    effective_bands,
    reach_bands,
)
from service.safety.context import Context, Pair, Viewer, member
from service.safety.exposure import ImpressionLedger
from service.safety.guardian import Controls, GuardianRegistry
from service.safety.policy import DAY, Policy, PolicyHolder
from service.safety.reasons import FilterReason
from service.safety.regions import RegionTable
from service.safety.rules import NAMEABLE_RULES, SEND_RULES, SUGGESTION_ONLY_RULES, SUGGESTION_RULES, Rule
from service.safety.rules.common import ACTIVE

# Callers import these from here (the engine's public face), though they
# live beside the rules now.
__all__ = [
    "NAMEABLE_RULES",
    "SEND_RULES",
    "SUGGESTION_ONLY_RULES",
    "SUGGESTION_RULES",
    "Context",
    "Decision",
    "MessagingDecision",
    "Pair",
    "Rule",
    "SafetyEngine",
    "SafetyVerdict",
    "Viewer",
    "age_reading_one",
    "age_readings",
    "effective_band",
    "effective_bands",
    "member",
    "reach_bands",
]



class Decision(IntEnum):
    """Mirrors contactgraph.v1.Decision."""

    UNSPECIFIED = 0
    ALLOW = 1
    ALLOW_AS_REQUEST = 2
    DENY = 3


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
        self._controls_cache: tuple[weakref.ref[GraphStore], int, dict[int, Controls]] | None = None
        self._regions: RegionTable | None = None

    def observe(self, store: GraphStore, events: list[Event]) -> None:
        """Called after events are applied: counts a linked child's messages
        for the guardian overview and ends guardian links of a child whose
        profile now says adult."""
        for e in events:
            if e.kind == EventKind.INTERACTION and e.detail == InteractionType.MESSAGE:
                self.guardians.observe_message(e.actor, e.target, e.time)
            elif e.kind == EventKind.PROFILE and e.profile is not None and (
                    e.profile.age_band is not None or e.profile.age_assurance is not None) and (
                    self.guardians.links_of(e.actor)):
                # A stronger assurance alone can make a weakly assured
                # former minor an adult.
                row = store.row(e.actor)
                minor = row >= 0 and effective_band(store, row) != ADULT
                self.guardians.end_links_if_adult(e.actor, minor)

    # -- shared facts ---------------------------------------------------
    def region_table(self, policy: Policy) -> RegionTable:
        """The lookup tables of this policy (rebuilt when the policy is
        replaced; a policy is immutable)."""
        table = self._regions
        if table is None or table.policy is not policy:
            table = self._regions = RegionTable(policy)
        return table

    def controls_by_row(self, store: GraphStore) -> dict[int, Controls]:
        """Guardian controls in force, keyed by the child's row. Controls
        of a child who is now an adult no longer apply."""
        version = self.guardians.version
        cached = self._controls_cache
        if cached is not None and cached[0]() is store and cached[1] == version:
            return cached[2]
        out: dict[int, Controls] = {}
        for ext, controls in self.guardians.controlled_children().items():
            row = store.row(ext)
            if row >= 0 and effective_band(store, row) != ADULT:
                out[row] = controls
        self._controls_cache = (weakref.ref(store), version, out)
        return out

    def suspicious(self, store: GraphStore, policy: Policy, rows: np.ndarray, now: float) -> np.ndarray:
        """Accounts blocked or reported by at least k distinct minors: blocks
        in force count whenever they were made (fail closed); reports, and
        blocks lifted, count within the window (a child pressed into
        unblocking an adult is a known grooming pattern, so lifting a block
        does not clear the adult at once).

        Blocks in force plus everyone who ever reported or unblocked a row
        bound its accusers from above, so only rows with at least k of those (a few in
        a million) are counted exactly; the rest cannot be suspicious. The
        bound is read from the live store on every call, never cached."""
        out = np.zeros(rows.shape[0], bool)
        k = policy.suspicious_min_minors
        bound = store.accusation_bound(rows)
        for i in np.flatnonzero(bound >= k).tolist():
            out[i] = self._accused_by_minors(store, policy, int(rows[i]), now)
        return out

    def suspicious_one(self, store: GraphStore, policy: Policy, row: int, now: float) -> bool:
        """``suspicious`` for one row."""
        if store.accusation_bound_one(row) < policy.suspicious_min_minors:
            return False
        return self._accused_by_minors(store, policy, row, now)

    @staticmethod
    def _accused_by_minors(store: GraphStore, policy: Policy, row: int, now: float) -> bool:
        since = now - policy.suspicious_window_days * DAY
        accusers = np.union1d(np.union1d(store.blocks.in_(row), store.reports.actors_about(row, since)),
                              store.unblocks.actors_about(row, since))
        if accusers.shape[0] < policy.suspicious_min_minors:
            return False
        minors = int((effective_bands(store, accusers) != ADULT).sum())
        return minors >= policy.suspicious_min_minors

    # -- viewers and senders ---------------------------------------------
    def sender_problems(self, store: GraphStore, row: int, policy: Policy | None = None) -> list[FilterReason]:
        """Why this user may not message anyone (empty if they may)."""
        p = store.profiles
        if row < 0 or row >= len(p) or not p.column("has_profile")[row]:
            return [FilterReason.VIEWER_MISSING_PROFILE]
        problems = []
        if int(p.column("account_state")[row]) != ACTIVE:
            problems.append(FilterReason.VIEWER_ACCOUNT_STATE)
        band = effective_band(store, row)
        rules = (policy or self.policy.current).region(decode_region(int(p.column("region")[row])))
        if band == UNSET_BAND or band < rules.min_dm_band:
            problems.append(FilterReason.VIEWER_UNDER_16)
        return problems

    def viewer_ineligibility(self, store: GraphStore, row: int) -> FilterReason | None:
        """Why this viewer gets no suggestions at all, or None."""
        policy = self.policy.current
        problems = self.sender_problems(store, row, policy)
        if problems:
            return problems[0]
        band = effective_band(store, row)
        if band < policy.region(decode_region(int(store.profiles.column("region")[row]))).min_suggestion_band:
            return FilterReason.VIEWER_UNDER_16
        controls = self.controls_by_row(store).get(row)
        if controls is not None and not controls.suggestions_enabled:
            return FilterReason.GUARDIAN_SUGGESTIONS_OFF
        return None

    def viewer(self, store: GraphStore, row: int, now: float) -> Viewer:
        """The facts the rules read about a viewer, fetched lazily and kept
        for one request (pass it to every ``filter_suggestions`` call of the
        request). ``row`` must be inside the profile table."""
        return Viewer(self, store, self.policy.current, row, now)

    # -- judging ---------------------------------------------------------
    @staticmethod
    def _known(store: GraphStore, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(rows as int32, mask of rows inside the profile table or None when
        all are). Rows outside fail closed as missing profiles and no other
        rule looks at them."""
        rows = np.asarray(rows, np.int32)
        known = (rows >= 0) & (rows < len(store.profiles))
        return rows, (None if known.all() else known)

    def _matrix(self, viewer: Viewer, rows: np.ndarray, rules: tuple[Rule, ...], *,
                stranger: bool = False) -> np.ndarray:
        """(len(rules), len(rows)) bool: which rule rejects which candidate,
        every rule for every candidate (``stranger``: see Context)."""
        rows, known = self._known(viewer.store, rows)
        out = np.zeros((len(rules), rows.shape[0]), bool)
        inside = rows if known is None else rows[known]
        if inside.shape[0]:
            ctx = Context(viewer, inside, stranger=stranger)
            for i, rule in enumerate(rules):
                if known is None:
                    out[i] = rule.reject(ctx)
                else:
                    out[i, known] = rule.reject(ctx)
        if known is not None:
            missing = next(i for i, r in enumerate(rules) if r.reason == FilterReason.MISSING_PROFILE)
            out[missing, ~known] = True
        return out

    def nameable(self, facts: Viewer, rows: np.ndarray) -> np.ndarray:
        """Per row (bool): may this user be counted or named to the viewer
        as a friend in common with someone (NAMEABLE_RULES, as a stranger)?
        A viewer who may not message anyone is shown no one (fail closed)."""
        if self.sender_problems(facts.store, facts.row, facts.policy):
            return np.zeros(np.asarray(rows).shape[0], bool)
        return ~np.asarray(self._matrix(facts, rows, NAMEABLE_RULES, stranger=True).any(axis=0))

    def nameable_friends(self, facts: Viewer) -> np.ndarray:
        """The viewer's friends who may be counted or named as friends in
        common (sorted int32 rows, a subset of ``facts.friends()``)."""
        friends = facts.friends()
        if friends.shape[0] == 0:
            return friends
        return np.asarray(friends[self.nameable(facts, friends)])

    def nameable_mutual_count(self, store: GraphStore, viewer: int, other: int, now: float) -> int:
        """Friends in common between two rows that ``viewer`` may be told
        of (0 when either row is unknown or the viewer has no profile)."""
        if not (0 <= viewer < len(store.profiles)) or other < 0:
            return 0
        mutual = np.intersect1d(store.friends_of(viewer), store.friends_of(other), assume_unique=True)
        if mutual.shape[0] == 0:
            return 0
        return int(self.nameable(self.viewer(store, viewer, now), mutual.astype(np.int32)).sum())

    def filter_suggestions(self, store: GraphStore, viewer: int, rows: np.ndarray, now: float, *,
                           facts: Viewer | None = None) -> SafetyVerdict:
        """Which candidates may be suggested to ``viewer`` (a row that may
        receive suggestions), and the first rule that removes each other.
        ``facts``: the request's ``viewer(...)``, to share across batches."""
        facts = facts if facts is not None and facts.row == viewer else self.viewer(store, viewer, now)
        rows, known = self._known(store, rows)
        rules = SUGGESTION_RULES
        matrix = np.zeros((len(rules), rows.shape[0]), bool)
        inside = rows if known is None else rows[known]
        if inside.shape[0]:
            ctx = Context(facts, inside)
            sub = matrix if known is None else np.zeros((len(rules), inside.shape[0]), bool)
            for i, rule in enumerate(rules):
                if rule.narrows and i:
                    # Only the first reason of a removal is reported, so a
                    # heavy rule may skip the candidates removed already.
                    alive = np.asarray(~sub[:i].any(axis=0))
                    if not alive.any():
                        break
                    ctx.alive = alive
                sub[i] = rule.reject(ctx)
            if known is not None:
                matrix[:, known] = sub
        if known is not None:
            matrix[next(i for i, r in enumerate(rules) if r.reason == FilterReason.MISSING_PROFILE), ~known] = True
        rejected = np.asarray(matrix.any(axis=0))
        first = np.where(rejected, matrix.argmax(axis=0), -1)
        first_reason: list[FilterReason | None] = [rules[i].reason if i >= 0 else None for i in first.tolist()]
        removed: dict[FilterReason, int] = {}
        if rejected.any():
            index, count = np.unique(first[rejected], return_counts=True)
            for i, c in zip(index.tolist(), count.tolist(), strict=True):
                removed[rules[i].reason] = removed.get(rules[i].reason, 0) + c
        return SafetyVerdict(~rejected, first_reason, removed)

    def suggestion_reasons(self, store: GraphStore, viewer: int, row: int, now: float) -> list[FilterReason]:
        """Every rule that removes one candidate (for explanations)."""
        if viewer < 0 or viewer >= len(store.profiles):
            # No facts to read about a viewer without a profile; whoever asks
            # learns the viewer's own problem from viewer_ineligibility.
            column = self._unknown_viewer_column(store, row)
        else:
            column = self._matrix(self.viewer(store, viewer, now), np.array([row], np.int32),
                                  SUGGESTION_RULES)[:, 0]
        reasons = list(dict.fromkeys(SUGGESTION_RULES[i].reason for i in np.flatnonzero(column).tolist()))
        if reasons and self._age_uncertainty_removes(store, viewer, row, now, column):
            reasons.append(FilterReason.AGE_UNCERTAIN)
        return reasons

    def _age_uncertainty_removes(self, store: GraphStore, viewer: int, row: int, now: float,
                                 column: np.ndarray) -> bool:
        """Does a rule remove the candidate only because the viewer's, the
        candidate's or a mutual friend's age is uncertain (that is, not when
        every age is read at its current band)?"""
        if viewer < 0 or viewer >= len(store.profiles) or row < 0 or row >= len(store.profiles):
            return False
        declared = self._matrix(Viewer(self, store, self.policy.current, viewer, now, as_declared=True),
                                np.array([row], np.int32), SUGGESTION_RULES)[:, 0]
        return bool((column & ~declared).any())

    @staticmethod
    def _unknown_viewer_column(store: GraphStore, row: int) -> np.ndarray:
        column = np.zeros(len(SUGGESTION_RULES), bool)
        if row < 0 or row >= len(store.profiles) or not store.profiles.column("has_profile")[row]:
            column[[i for i, r in enumerate(SUGGESTION_RULES) if r.reason == FilterReason.MISSING_PROFILE]] = True
        return column

    def check_messaging(self, store: GraphStore, sender_id: int, recipient_ids: list[int],
                        now: float) -> list[MessagingDecision]:
        """May the sender message each recipient now? One decision each, in
        order. One recipient takes the scalar rules; more, the vectorised
        ones (the same answers: tests/service/safety/test_safety_fastpath.py)."""
        policy = self.policy.current
        sender = store.row(sender_id)
        problems = self.sender_problems(store, sender, policy)
        if problems:
            return [MessagingDecision(Decision.DENY, list(problems)) for _ in recipient_ids]
        viewer = Viewer(self, store, policy, sender, now)
        if len(recipient_ids) == 1:
            return [self.check_one(viewer, store.row(recipient_ids[0]))]
        return self.check_many(viewer, store.rows_of(np.array(recipient_ids, np.int64)))

    def check_one(self, viewer: Viewer, row: int) -> MessagingDecision:
        """The send decision for one recipient row (-1: unknown), scalar
        rules. ``viewer`` must be a sender without ``sender_problems``."""
        store = viewer.store
        if row < 0 or row >= len(store.profiles):
            return MessagingDecision(Decision.DENY, [FilterReason.MISSING_PROFILE])
        pair = Pair(viewer, row)
        reasons = [rule.reason for rule in SEND_RULES if rule.reject_one(pair)]  # type: ignore[misc]
        if reasons:
            return MessagingDecision(Decision.DENY, list(dict.fromkeys(reasons)))
        established = (pair.friends or pair.follows_viewer
                       or store.interactions.get(row, viewer.row) is not None)
        return MessagingDecision(Decision.ALLOW if established else Decision.ALLOW_AS_REQUEST, [])

    def check_many(self, viewer: Viewer, rows: np.ndarray) -> list[MessagingDecision]:
        """The send decisions for many recipient rows (-1: unknown),
        vectorised rules."""
        matrix = self._matrix(viewer, rows, SEND_RULES)
        denied = np.asarray(matrix.any(axis=0))
        established = np.zeros(rows.shape[0], bool)
        ok = np.flatnonzero(~denied)
        if ok.shape[0]:
            ctx = Context(viewer, rows[ok].astype(np.int32))
            established[ok] = ctx.friends | ctx.follows_viewer | member(viewer.inbound(), ctx.rows)
        decisions = []
        reason_of = [rule.reason for rule in SEND_RULES]
        for hits, deny, inbox in zip(matrix.T.tolist(), denied.tolist(), established.tolist(), strict=True):
            if deny:
                reasons = list(dict.fromkeys(r for r, hit in zip(reason_of, hits, strict=True) if hit))
                decisions.append(MessagingDecision(Decision.DENY, reasons))
            else:
                decisions.append(MessagingDecision(Decision.ALLOW if inbox else Decision.ALLOW_AS_REQUEST, []))
        return decisions
