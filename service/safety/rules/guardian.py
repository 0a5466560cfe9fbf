"""Guardian controls, on either side of a pair: contacts a guardian
removed, "who may message the child" (friends only / no one), and
suggestions turned off. The controls themselves are kept by
``service/safety/guardian.py``."""

from __future__ import annotations

import numpy as np

from service.safety.context import Context, Pair
from service.safety.guardian import Messaging
from service.safety.reasons import FilterReason
from service.safety.rules.common import Rule

_NO_ONE = int(Messaging.NO_ONE)
_FRIENDS_ONLY = int(Messaging.FRIENDS_ONLY)


def _guardian_removed(ctx: Context) -> np.ndarray:
    controls = ctx.viewer.controls()
    out = ctx.zeros()
    if not controls:
        return out
    mine = controls.get(ctx.viewer.row)
    if mine is not None and mine.removed:
        out |= np.isin(ctx.store.ids.ext(ctx.rows), np.fromiter(mine.removed, np.int64))
    viewer_ext = ctx.viewer.ext
    for i, row in enumerate(ctx.rows.tolist()):
        theirs = controls.get(row)
        if theirs is not None and viewer_ext in theirs.removed:
            out[i] = True
    return out


def _guardian_removed_one(p: Pair) -> bool:
    controls = p.viewer.controls()
    if not controls:
        return False
    mine = controls.get(p.viewer.row)
    if mine is not None and p.store.ids.ext_of(p.row) in mine.removed:
        return True
    theirs = controls.get(p.row)
    return theirs is not None and p.viewer.ext in theirs.removed


def _guardian_messaging(ctx: Context) -> np.ndarray:
    """A guardian's "who may message the child" limits the child's contacts
    both ways."""
    controls = ctx.viewer.controls()
    out = ctx.zeros()
    if not controls:
        return out
    mine = controls.get(ctx.viewer.row)
    if mine is not None:
        if mine.messaging == _NO_ONE:
            out[:] = True
        elif mine.messaging == _FRIENDS_ONLY:
            out |= ~ctx.friends
    for i, row in enumerate(ctx.rows.tolist()):
        theirs = controls.get(row)
        if theirs is None:
            continue
        level = theirs.messaging
        if level == _NO_ONE or (level == _FRIENDS_ONLY and not ctx.friends[i]):
            out[i] = True
    return out


def _guardian_messaging_one(p: Pair) -> bool:
    controls = p.viewer.controls()
    if not controls:
        return False
    for child in (p.viewer.row, p.row):
        c = controls.get(child)
        if c is not None and (c.messaging == _NO_ONE or (c.messaging == _FRIENDS_ONLY and not p.friends)):
            return True
    return False


def _guardian_suggestions_off(ctx: Context) -> np.ndarray:
    controls = ctx.viewer.controls()
    off = [row for row, c in controls.items() if not c.suggestions_enabled]
    if not off:
        return ctx.zeros()
    return np.isin(ctx.rows, np.array(off, np.int32))


GUARDIAN_REMOVED_CONTACT = Rule("guardian_removed_contact", FilterReason.GUARDIAN_REMOVED_CONTACT, _guardian_removed,
                                _guardian_removed_one)
GUARDIAN_MESSAGING = Rule("guardian_messaging", FilterReason.GUARDIAN_MESSAGING_RESTRICTED, _guardian_messaging,
                          _guardian_messaging_one)
GUARDIAN_SUGGESTIONS_OFF = Rule("guardian_suggestions_off", FilterReason.GUARDIAN_SUGGESTIONS_OFF,
                                _guardian_suggestions_off)
