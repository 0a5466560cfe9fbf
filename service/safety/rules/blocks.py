"""Blocks and mutes: a block in either direction keeps two users apart on
both paths; a mute, and a block lifted within the cool-down (either way),
keep the candidate out of the viewer's suggestions."""

from __future__ import annotations

import numpy as np

from service.safety.context import Context, Pair, member
from service.safety.reasons import FilterReason
from service.safety.rules.common import Rule


def _blocked(ctx: Context) -> np.ndarray:
    return np.asarray(member(ctx.viewer.blocks_out(), ctx.rows) | member(ctx.viewer.blocks_in(), ctx.rows))


def _blocked_one(p: Pair) -> bool:
    return p.store.is_blocked_either(p.viewer.row, p.row)


def _muted(ctx: Context) -> np.ndarray:
    return member(ctx.viewer.mutes(), ctx.rows)


def _unblock_cooldown(ctx: Context) -> np.ndarray:
    return np.asarray(member(ctx.viewer.log("unblocked"), ctx.rows)
                      | member(ctx.viewer.log("unblockers"), ctx.rows))


BLOCKED = Rule("blocked", FilterReason.BLOCKED, _blocked, _blocked_one)
MUTED = Rule("muted", FilterReason.MUTED, _muted)
UNBLOCK_COOLDOWN = Rule("unblock_cooldown", FilterReason.UNBLOCK_COOLDOWN, _unblock_cooldown)
