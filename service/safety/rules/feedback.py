"""The viewer's own recent feedback: a dismissed suggestion, or someone the
viewer unfollowed, stays away for the policy's window."""

from __future__ import annotations

import numpy as np

from service.safety.context import Context, member
from service.safety.reasons import FilterReason
from service.safety.rules.common import Rule


def _dismissed(ctx: Context) -> np.ndarray:
    return member(ctx.viewer.log("dismissed"), ctx.rows)


def _recently_unfollowed(ctx: Context) -> np.ndarray:
    return member(ctx.viewer.log("unfollowed"), ctx.rows)


DISMISSED = Rule("dismissed", FilterReason.DISMISSED, _dismissed)
RECENTLY_UNFOLLOWED = Rule("recently_unfollowed", FilterReason.RECENTLY_UNFOLLOWED, _recently_unfollowed)
