"""Who the candidate is: the viewer themself, or an account without a
profile (fail closed: no profile, no suggestion and no message)."""

from __future__ import annotations

import numpy as np

from service.safety.context import Context, Pair
from service.safety.reasons import FilterReason
from service.safety.rules.common import Rule


def _self(ctx: Context) -> np.ndarray:
    return np.asarray(ctx.rows == ctx.viewer.row)


def _self_one(p: Pair) -> bool:
    return p.row == p.viewer.row


def _missing_profile(ctx: Context) -> np.ndarray:
    return np.asarray(~ctx.col("has_profile"))


def _missing_profile_one(p: Pair) -> bool:
    return not p.col("has_profile")


SELF = Rule("self", FilterReason.SELF, _self, _self_one)
MISSING_PROFILE = Rule("missing_profile", FilterReason.MISSING_PROFILE, _missing_profile, _missing_profile_one)
