"""The safety-relevant profile of every user as numpy columns by row, so
filters read a whole batch of candidates at once."""

from __future__ import annotations

import numpy as np

from .model import Profile, encode_region

# Column name -> dtype. 0 means "unset" in every enum column (the proto
# zero value); discoverable uses -1 for unset.
COLUMNS: dict[str, type] = {
    "has_profile": np.bool_,
    "age_band": np.int8,
    "message_privacy": np.int8,
    "account_state": np.int8,
    "age_assurance": np.int8,
    "discoverable": np.int8,
    "region": np.uint16,
    # The lowest age band the profile ever declared: a weakly assured adult
    # who once said they were a minor keeps minor protections.
    "min_band": np.int8,
    # The highest age band the profile ever declared, and whether a declared
    # band was ever younger than the one before it. An account whose age is
    # uncertain is read at its oldest band wherever it reaches minors, so an
    # adult cannot become a minor to minors by declaring a younger age
    # (issue 20). Snapshots written before these columns existed load with
    # the current band and False (see ``OPTIONAL_COLUMNS``).
    "max_band": np.int8,
    "went_younger": np.bool_,
}

# Columns a snapshot may lack (written by an older build), with how to fill
# them from the columns it has: the history before the upgrade is unknown,
# so the current band stands for it; a rebuild from the event logs restores
# it exactly.
OPTIONAL_COLUMNS: dict[str, str] = {"max_band": "age_band", "went_younger": ""}


class ProfileTable:
    def __init__(self, columns: dict[str, np.ndarray] | None = None, n_rows: int = 0) -> None:
        if columns is None:
            columns = {name: self._blank(name, n_rows) for name in COLUMNS}
        self._cols: dict[str, np.ndarray] = {name: np.array(columns[name], COLUMNS[name]) for name in COLUMNS}
        self._n = int(self._cols["has_profile"].shape[0])

    @staticmethod
    def _blank(name: str, n: int) -> np.ndarray:
        return np.full(n, -1 if name == "discoverable" else 0, COLUMNS[name])

    def __len__(self) -> int:
        return self._n

    def column(self, name: str) -> np.ndarray:
        """A read-only view of one column over all rows."""
        view = self._cols[name][: self._n]
        view.flags.writeable = False
        return view

    def ensure_rows(self, n: int) -> None:
        if n <= self._n:
            return
        capacity = self._cols["has_profile"].shape[0]
        if n > capacity:
            new_cap = max(n, capacity * 2, 16)
            for name, col in self._cols.items():
                grown = self._blank(name, new_cap)
                grown[: self._n] = col[: self._n]
                self._cols[name] = grown
        self._n = n

    def update(self, row: int, profile: Profile) -> None:
        """Set the fields the profile carries; the others stay."""
        self.ensure_rows(row + 1)
        c = self._cols
        c["has_profile"][row] = True
        if profile.age_band is not None:
            band = int(profile.age_band)
            c["age_band"][row] = band
            if band > 0:  # an unset band is no declaration: the history keeps the last ones
                if band < c["max_band"][row]:
                    c["went_younger"][row] = True
                if c["min_band"][row] == 0 or band < c["min_band"][row]:
                    c["min_band"][row] = band
                c["max_band"][row] = max(int(c["max_band"][row]), band)
        if profile.message_privacy is not None:
            c["message_privacy"][row] = int(profile.message_privacy)
        if profile.account_state is not None:
            c["account_state"][row] = int(profile.account_state)
        if profile.age_assurance is not None:
            c["age_assurance"][row] = int(profile.age_assurance)
        if profile.discoverable is not None:
            c["discoverable"][row] = int(profile.discoverable)
        if profile.region_code is not None:
            c["region"][row] = encode_region(profile.region_code)

    def clear(self, row: int) -> None:
        for name in COLUMNS:
            self._cols[name][row] = -1 if name == "discoverable" else 0

    def columns(self) -> dict[str, np.ndarray]:
        return {name: col[: self._n] for name, col in self._cols.items()}

    def nbytes(self) -> int:
        return sum(col.nbytes for col in self._cols.values())
