"""The rule record every family file fills in, and the plain-int values
more than one family compares with (plain ints: comparing a numpy array
with an IntEnum member makes numpy probe the member for array protocols,
which costs microseconds per rule)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graph.model import AccountState
from service.safety.context import Context, Pair
from service.safety.reasons import FilterReason

ACTIVE = int(AccountState.ACTIVE)

RuleFn = Callable[[Context], np.ndarray]
PairRuleFn = Callable[[Pair], bool]


@dataclass(frozen=True)
class Rule:
    """A named rule: ``reject(ctx)`` is a bool per candidate, True to remove;
    ``reject_one(pair)``, for send rules, the same answer for one pair.
    ``narrows``: the rule reads ``ctx.alive`` to spare work on candidates
    already removed (set only where that work is heavy)."""

    name: str
    reason: FilterReason
    reject: RuleFn
    reject_one: PairRuleFn | None = None
    narrows: bool = False
