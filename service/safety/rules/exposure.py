"""Exposure: how often a candidate is shown, from the impression ledger
(``service/safety/exposure.py``): to this viewer without action (fatigue),
and to everyone today (a daily cap, stricter for minors)."""

from __future__ import annotations

import numpy as np

from service.safety.context import Context
from service.safety.policy import DAY
from service.safety.reasons import FilterReason
from service.safety.rules.common import Rule


def _impression_fatigue(ctx: Context) -> np.ndarray:
    p = ctx.policy
    ledger = ctx.viewer.engine.ledger
    if ctx.alive is None or ctx.alive.all():
        return ledger.fatigued(ctx.viewer.ext, ctx.store.ids.ext(ctx.rows), p.max_impressions,
                               p.fatigue_window_days * DAY, ctx.now)
    out = ctx.zeros()
    out[ctx.alive] = ledger.fatigued(ctx.viewer.ext, ctx.store.ids.ext(ctx.rows[ctx.alive]), p.max_impressions,
                                     p.fatigue_window_days * DAY, ctx.now)
    return out


def _exposure_cap(ctx: Context) -> np.ndarray:
    # Stricter for minors: never above the adult cap, whatever the file says.
    adult_cap = ctx.policy.daily_cap_adult
    minor_cap = np.minimum(ctx.rule("daily_cap_minor"), adult_cap)
    ledger = ctx.viewer.engine.ledger
    # Nobody reached the lowest cap today: nobody is over theirs (exact, and
    # spares a dictionary look-up per candidate).
    if ledger.peak_today(ctx.now) < min(int(np.min(minor_cap)), adult_cap):
        return ctx.zeros()
    cap = np.where(ctx.minor, minor_cap, adult_cap)
    return np.asarray(ledger.exposures_today(ctx.store.ids.ext(ctx.rows), ctx.now) >= cap)


IMPRESSION_FATIGUE = Rule("impression_fatigue", FilterReason.IMPRESSION_FATIGUE, _impression_fatigue, narrows=True)
EXPOSURE_CAP = Rule("exposure_cap", FilterReason.EXPOSURE_CAP, _exposure_cap)
