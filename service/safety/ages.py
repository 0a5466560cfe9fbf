"""Age readings: how old the rules take an account to be.

An account's current band is not always the one the rules read: an
uncertain age has two readings (below), and every rule takes the one that is
stricter for the *other* user. Plain ints as constants: comparing a numpy
array with an IntEnum member makes numpy probe the member for array
protocols, which costs microseconds per rule."""

from __future__ import annotations

import numpy as np

from graph.model import AgeAssurance, AgeBand
from graph.store import GraphStore

ADULT = int(AgeBand.ADULT)
UNSET_BAND = int(AgeBand.UNSPECIFIED)
_WEAK_A, _WEAK_B = int(AgeAssurance.UNSPECIFIED), int(AgeAssurance.DECLARED)


# An account's age is *uncertain* when it is weakly assured (assurance unset
# or DECLARED) and has declared more than one band, or when it ever declared
# a band younger than one it declared before (whatever the assurance now).
# Such an account has two readings, and every rule takes the one that is
# stricter for the *other* user (issue 20):
# - protected: where its own protections are at stake (it is the one
#   contacted or suggested, its own DM and suggestion age, guardian
#   controls, exposure caps, counting it as a minor who accused someone):
#   its youngest declared band when weakly assured; a strongly assured
#   (ESTIMATED, VERIFIED) band is taken at its word;
# - reach: where it reaches minors (it sends, it is suggested to a minor,
#   it is the friend through whom a minor would be found): its oldest
#   declared band when weakly assured or after any change toward younger,
#   since an assurance given for one band says nothing of a younger one
#   declared after it.
# A certain account's readings are both its current band; an unset band
# stays 0 in both (the most restrictive).
def _readings(band: np.ndarray, lowest: np.ndarray, highest: np.ndarray, assurance: np.ndarray,
              younger: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weak = (assurance == _WEAK_A) | (assurance == _WEAK_B)
    known = band > 0
    protected = np.where(known & weak & (lowest > 0), np.minimum(lowest, band), band).astype(np.int8)
    reach = np.where(known & (weak | younger), np.maximum(highest, band), band).astype(np.int8)
    return protected, reach


def age_readings(store: GraphStore, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (protected band, reach band), both int8."""
    p = store.profiles
    return _readings(p.column("age_band")[rows], p.column("min_band")[rows], p.column("max_band")[rows],
                     p.column("age_assurance")[rows], p.column("went_younger")[rows])


def effective_bands(store: GraphStore, rows: np.ndarray) -> np.ndarray:
    """Age band per row where its own protections are at stake (int8): the
    protected reading (see above); unset stays 0 (the most restrictive)."""
    return age_readings(store, rows)[0]


def reach_bands(store: GraphStore, rows: np.ndarray) -> np.ndarray:
    """Age band per row where it reaches minors (int8): the reach reading."""
    return age_readings(store, rows)[1]


def age_reading_one(store: GraphStore, row: int) -> tuple[int, int]:
    """``age_readings`` for one row, in plain Python (no numpy per call)."""
    p = store.profiles
    band = int(p.column("age_band")[row])
    if band <= 0:
        return band, band
    weak = int(p.column("age_assurance")[row]) in (_WEAK_A, _WEAK_B)
    lowest = int(p.column("min_band")[row])
    protected = min(lowest, band) if weak and lowest > 0 else band
    reach = max(int(p.column("max_band")[row]), band) if weak or bool(p.column("went_younger")[row]) else band
    return protected, reach


def effective_band(store: GraphStore, row: int) -> int:
    """``effective_bands`` for one row."""
    return age_reading_one(store, row)[0]
