"""The account-state list and the age-band matrix shared by the suggestion
rule tests (viewer x candidate) and the send-path tests (sender x
recipient).

Both tables ask every band on both sides, in each relationship, and agree
on what happens under 16 (or with no band): the first user's band is
checked before the second's. Only the answers for two DM-eligible users
differ between the two paths, so each test file keeps its own ``eligible``
table and passes it in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

# Every account state, and no state at all (which fails closed).
STATES: list[str | None] = ["ACTIVE", "DEACTIVATED", "SUSPENDED", "BANNED", "UNDER_REVIEW", None]
STATE_IDS = [str(s) for s in STATES]

# Every age band, and no band at all.
BANDS: list[str | None] = [None, "UNDER_13", "13_15", "16_17", "ADULT"]
BAND_IDS = {None: "unset", "UNDER_13": "under13", "13_15": "13_15", "16_17": "16_17", "ADULT": "adult"}
# The bands old enough to be suggested or to message at all.
DM_ELIGIBLE = ("16_17", "ADULT")

Answer = TypeVar("Answer")


def under_16_reason(first: str | None, second: str | None) -> str | None:
    """The reason a pair is refused for age before anything else is asked:
    the first user (viewer or sender) under 16, else the second; None when
    both are DM-eligible."""
    if first not in DM_ELIGIBLE:
        return "VIEWER_UNDER_16"
    if second not in DM_ELIGIBLE:
        return "UNDER_16"
    return None


def age_cases(eligible: Mapping[tuple[str, str], Mapping[str, Answer]], *, relations: Sequence[str],
              refused: Answer, names: tuple[str, str], eligible_reason: str | None) -> list[ParameterSet]:
    """``(first band, second band, relation, answer, reason)`` for every
    band on both sides and every relation, with ids like
    ``viewer_adult-candidate_16_17-friends`` (``names`` gives the two
    sides' words).

    ``eligible[(first, second)][relation]`` is the answer for two
    DM-eligible users; a pair or relation it does not list (anyone under 16
    or unset, always) gets ``refused``. The reason is ``under_16_reason``,
    or ``eligible_reason`` when both users are DM-eligible."""
    cases = []
    for first in BANDS:
        for second in BANDS:
            for relation in relations:
                row = eligible.get((first, second), {}) if first and second else {}
                answer = row.get(relation, refused)
                reason = under_16_reason(first, second) or eligible_reason
                cases.append(pytest.param(
                    first, second, relation, answer, reason,
                    id=f"{names[0]}_{BAND_IDS[first]}-{names[1]}_{BAND_IDS[second]}-{relation}"))
    return cases
