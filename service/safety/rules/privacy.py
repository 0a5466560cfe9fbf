"""The candidate's own settings: who may message them (everyone / friends /
no one) and whether they may be suggested at all (``discoverable``)."""

from __future__ import annotations

import numpy as np

from graph.model import MessagePrivacy
from service.safety.context import Context, Pair
from service.safety.reasons import FilterReason
from service.safety.rules.common import Rule

_EVERYONE = int(MessagePrivacy.EVERYONE)
_FRIENDS = int(MessagePrivacy.FRIENDS)


def _message_privacy(ctx: Context) -> np.ndarray:
    privacy = ctx.col("message_privacy")
    allowed = (privacy == _EVERYONE) | ((privacy == _FRIENDS) & ctx.friends)
    return np.asarray(~allowed)


def _message_privacy_one(p: Pair) -> bool:
    privacy = p.col("message_privacy")
    return not (privacy == _EVERYONE or (privacy == _FRIENDS and p.friends))


def _not_discoverable(ctx: Context) -> np.ndarray:
    # Unset means yes for adults and no for minors; friends already know
    # each other, so the setting guards only strangers.
    setting = ctx.col("discoverable")
    discoverable = (setting == 1) | ((setting == -1) & ~ctx.minor)
    return np.asarray(~discoverable & ~ctx.friends)


MESSAGE_PRIVACY = Rule("message_privacy", FilterReason.MESSAGE_PRIVACY, _message_privacy, _message_privacy_one)
NOT_DISCOVERABLE = Rule("not_discoverable", FilterReason.NOT_DISCOVERABLE, _not_discoverable)
