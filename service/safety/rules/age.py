"""Age: the DM and suggestion ages, and how minors and adults may meet.
Each side is read at the age reading stricter for the other
(``service/safety/ages.py``: *protected* where its own protections are at
stake, *reach* where it reaches minors)."""

from __future__ import annotations

import numpy as np

from service.safety.ages import UNSET_BAND
from service.safety.context import Context, Pair, member
from service.safety.reasons import FilterReason
from service.safety.rules.common import Rule


def _under_dm_age(ctx: Context) -> np.ndarray:
    # The pair's threshold (stricter region) binds both users: a viewer old
    # enough at home may still be too young for a stricter candidate's region.
    floor = ctx.rule("min_dm_band")
    bands = ctx.bands
    return np.asarray((bands < floor) | (bands == UNSET_BAND) | (ctx.viewer.band < floor))


def _under_dm_age_one(p: Pair) -> bool:
    floor = int(p.rules.min_dm_band)
    return p.band < floor or p.band == UNSET_BAND or p.viewer.band < floor


def _adult_to_minor_not_followed(ctx: Context) -> np.ndarray:
    # The sender reaches out: an uncertain sender is read at its oldest
    # declared band, the recipient at its youngest.
    if not ctx.viewer.reach_adult:
        return ctx.zeros()
    return np.asarray(ctx.minor & ~ctx.follows_viewer)


def _adult_to_minor_not_followed_one(p: Pair) -> bool:
    return p.viewer.reach_adult and p.minor and not p.follows_viewer


def _under_suggestion_age(ctx: Context) -> np.ndarray:
    floor = ctx.rule("min_suggestion_band")
    return np.asarray((ctx.bands < floor) | (ctx.viewer.band < floor))


def _minor_adult_not_friends(ctx: Context) -> np.ndarray:
    # A floor in code: no adult-minor suggestions between strangers. Each
    # side is read the way stricter for the other: the one who would be
    # protected as a minor, against the other read at its oldest band.
    v = ctx.viewer
    mixed = ctx.minor.copy() if v.reach_adult else ctx.zeros()
    if v.minor:
        mixed |= ctx.reach_adult
    return np.asarray(mixed & ~ctx.friends)


def _minor_no_safe_connection(ctx: Context) -> np.ndarray:
    """A minor is suggested only after a minor-initiated follow or enough
    mutual friends who are minors themselves (never via adults)."""
    need = ctx.minor & ~ctx.friends & ~ctx.follows_viewer
    if ctx.alive is not None:
        need &= ctx.alive
    if not need.any():
        return np.asarray(need)
    uniq, n = ctx.viewer.minor_friend_reach()
    counts = np.zeros(ctx.n, np.int64)
    if uniq.shape[0]:
        hit = member(uniq, ctx.rows)
        counts[hit] = n[uniq.searchsorted(ctx.rows[hit])]
    return np.asarray(need & (counts < ctx.rule("min_mutual_friends")))


UNDER_16 = Rule("under_16", FilterReason.UNDER_16, _under_dm_age, _under_dm_age_one)
ADULT_TO_MINOR_NOT_FOLLOWED = Rule("adult_to_minor_not_followed", FilterReason.ADULT_TO_MINOR_NOT_FOLLOWED,
                                   _adult_to_minor_not_followed, _adult_to_minor_not_followed_one)
UNDER_SUGGESTION_AGE = Rule("under_suggestion_age", FilterReason.UNDER_16, _under_suggestion_age)
MINOR_ADULT_NOT_FRIENDS = Rule("minor_adult_not_friends", FilterReason.MINOR_ADULT_NOT_FRIENDS,
                               _minor_adult_not_friends)
MINOR_NO_SAFE_CONNECTION = Rule("minor_no_safe_connection", FilterReason.MINOR_NO_SAFE_CONNECTION,
                                _minor_no_safe_connection, narrows=True)
