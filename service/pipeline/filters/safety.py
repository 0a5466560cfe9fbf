"""The safety rules that need only profiles and the graph.

Fail closed everywhere: an unset age band, privacy or account state is the
most restrictive value, and a user without a profile is never suggested and
gets no suggestions. Rules are plain functions over numpy columns, so one
call judges a whole batch of candidates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graph.model import AccountState, AgeBand, MessagePrivacy
from graph.store import GraphStore

from ..reasons import FilterReason

# Bands allowed to use direct messages at all.
_DM_BANDS = np.array([AgeBand.AGE_16_17, AgeBand.ADULT], np.int8)


@dataclass(frozen=True)
class Viewer:
    row: int
    user_id: int
    age_band: int
    friends: np.ndarray  # int32 rows, sorted

    @property
    def is_minor(self) -> bool:
        return self.age_band != AgeBand.ADULT

    @staticmethod
    def of(store: GraphStore, row: int) -> "Viewer":
        return Viewer(row, store.ids.ext_of(row), int(store.profiles.column("age_band")[row]),
                      store.friends_of(row))


def viewer_ineligibility(store: GraphStore, row: int) -> FilterReason | None:
    """Why this viewer may not receive suggestions at all, or None."""
    if row < 0 or row >= len(store.profiles) or not store.profiles.column("has_profile")[row]:
        return FilterReason.VIEWER_MISSING_PROFILE
    if store.profiles.column("account_state")[row] != AccountState.ACTIVE:
        return FilterReason.VIEWER_ACCOUNT_STATE
    if store.profiles.column("age_band")[row] not in _DM_BANDS:
        return FilterReason.VIEWER_UNDER_16
    return None


class Context:
    """Per-call lazily computed facts shared by several rules."""

    def __init__(self, store: GraphStore, viewer: Viewer, rows: np.ndarray) -> None:
        self.store = store
        self.viewer = viewer
        self.rows = rows
        self._friends: np.ndarray | None = None

    def col(self, name: str) -> np.ndarray:
        return self.store.profiles.column(name)[self.rows]

    @property
    def friends(self) -> np.ndarray:
        if self._friends is None:
            self._friends = np.isin(self.rows, self.viewer.friends)
        return self._friends


RuleFn = Callable[[Context], np.ndarray]


@dataclass(frozen=True)
class Rule:
    """A named rule: ``reject(ctx)`` is a bool per candidate, True to remove."""

    name: str
    reason: FilterReason
    reject: RuleFn


def _self(ctx: Context) -> np.ndarray:
    return ctx.rows == ctx.viewer.row


def _missing_profile(ctx: Context) -> np.ndarray:
    return ~ctx.col("has_profile")


def _account_state(ctx: Context) -> np.ndarray:
    return ctx.col("account_state") != AccountState.ACTIVE


def _under_16(ctx: Context) -> np.ndarray:
    return ~np.isin(ctx.col("age_band"), _DM_BANDS)


def _minor_adult_not_friends(ctx: Context) -> np.ndarray:
    cand_adult = ctx.col("age_band") == AgeBand.ADULT
    mixed = cand_adult == ctx.viewer.is_minor
    return mixed & ~ctx.friends


def _blocked(ctx: Context) -> np.ndarray:
    return ctx.store.blocked_either(ctx.viewer.row, ctx.rows)


def _muted(ctx: Context) -> np.ndarray:
    return ctx.store.muted(ctx.viewer.row, ctx.rows)


def _not_discoverable(ctx: Context) -> np.ndarray:
    # Unset means yes for adults and no for minors; friends already know
    # each other, so the setting guards only strangers.
    setting = ctx.col("discoverable")
    adult = ctx.col("age_band") == AgeBand.ADULT
    discoverable = (setting == 1) | ((setting == -1) & adult)
    return ~discoverable & ~ctx.friends


def _message_privacy(ctx: Context) -> np.ndarray:
    privacy = ctx.col("message_privacy")
    allowed = (privacy == MessagePrivacy.EVERYONE) | ((privacy == MessagePrivacy.FRIENDS) & ctx.friends)
    return ~allowed


RULES: tuple[Rule, ...] = (
    Rule("self", FilterReason.SELF, _self),
    Rule("missing_profile", FilterReason.MISSING_PROFILE, _missing_profile),
    Rule("account_state", FilterReason.ACCOUNT_STATE, _account_state),
    Rule("under_16", FilterReason.UNDER_16, _under_16),
    Rule("minor_adult_not_friends", FilterReason.MINOR_ADULT_NOT_FRIENDS, _minor_adult_not_friends),
    Rule("blocked", FilterReason.BLOCKED, _blocked),
    Rule("muted", FilterReason.MUTED, _muted),
    Rule("not_discoverable", FilterReason.NOT_DISCOVERABLE, _not_discoverable),
    Rule("message_privacy", FilterReason.MESSAGE_PRIVACY, _message_privacy),
)


@dataclass(frozen=True)
class SafetyVerdict:
    keep: np.ndarray  # bool per candidate
    first_reason: list[FilterReason | None]  # the first rule that removed each
    removed: dict[FilterReason, int]  # removals counted by first reason


def apply_rules(store: GraphStore, viewer: Viewer, rows: np.ndarray,
                rules: tuple[Rule, ...] = RULES) -> SafetyVerdict:
    """Judge every candidate row against every rule. Rows outside the
    profile table (a user newer than anything the table knows) fail
    closed as missing profiles."""
    rows = np.asarray(rows, np.int32)
    known = (rows >= 0) & (rows < len(store.profiles))
    safe_rows = np.where(known, rows, 0).astype(np.int32)
    ctx = Context(store, viewer, safe_rows)
    reason_index = np.full(rows.shape[0], -1, np.int64)
    reason_index[~known] = next(i for i, r in enumerate(rules) if r.reason == FilterReason.MISSING_PROFILE) \
        if any(r.reason == FilterReason.MISSING_PROFILE for r in rules) else 0
    for i, rule in enumerate(rules):
        rejected = rule.reject(ctx) & (reason_index < 0)
        reason_index[rejected] = i
    keep = reason_index < 0
    first = [rules[int(i)].reason if i >= 0 else None for i in reason_index.tolist()]
    removed: dict[FilterReason, int] = {}
    for r in first:
        if r is not None:
            removed[r] = removed.get(r, 0) + 1
    return SafetyVerdict(keep, first, removed)
