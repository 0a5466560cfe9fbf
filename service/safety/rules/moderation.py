"""Moderation: accounts that are not active (banned, suspended,
deactivated, under review, unset), reports between two users, and
suspicious adults (blocked or reported by several distinct minors; the
count itself is ``SafetyEngine.suspicious``)."""

from __future__ import annotations

import numpy as np

from service.safety.context import Context, Pair, member
from service.safety.reasons import FilterReason
from service.safety.rules.common import ACTIVE, Rule


def _account_state(ctx: Context) -> np.ndarray:
    return np.asarray(ctx.col("account_state") != ACTIVE)


def _account_state_one(p: Pair) -> bool:
    return p.col("account_state") != ACTIVE


def _suspicious_adult(ctx: Context) -> np.ndarray:
    # Whatever age the suspicious account claims: a suspicious viewer who
    # says they are a minor is still kept from minors.
    out = ctx.zeros()
    if ctx.viewer.minor:
        if ctx.alive is None:
            out |= ctx.suspicious(ctx.rows)
        else:
            out[ctx.alive] = ctx.suspicious(ctx.rows[ctx.alive])
    if ctx.viewer.suspicious():
        out |= ctx.minor
    return out


def _suspicious_adult_one(p: Pair) -> bool:
    v = p.viewer
    if v.minor and v.engine.suspicious_one(p.store, v.policy, p.row, v.now):
        return True
    return p.minor and v.suspicious()


def _reported(ctx: Context) -> np.ndarray:
    return np.asarray(member(ctx.viewer.log("reported"), ctx.rows) | member(ctx.viewer.log("reporters"), ctx.rows))


ACCOUNT_STATE = Rule("account_state", FilterReason.ACCOUNT_STATE, _account_state, _account_state_one)
SUSPICIOUS_ADULT = Rule("suspicious_adult", FilterReason.SUSPICIOUS_ADULT, _suspicious_adult, _suspicious_adult_one,
                        narrows=True)
REPORTED = Rule("reported", FilterReason.REPORTED, _reported)
