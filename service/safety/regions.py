"""A policy's region values as lookup tables, so that the rules read a
pair's region value (the stricter of two regions) with array gathers."""

from __future__ import annotations

import numpy as np

from graph.model import decode_region, encode_region
from service.safety.policy import Policy, RegionRules


class RegionTable:
    """One policy's region values as lookup tables: region code (uint16, as
    the profile column holds it) -> index into ``rules`` (0 = the base), so
    a batch's per-pair values are two array gathers."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.rules: list[RegionRules] = [policy.base, *policy.regions.values()]
        self.index = np.zeros(1 << 16, np.int16)
        self._pairs: dict[tuple[int, int], RegionRules] = {}
        self._per_viewer: dict[int, dict[str, np.ndarray]] = {}
        stray = []
        for i, code in enumerate(policy.regions, start=1):
            try:
                value = encode_region(code)
            except ValueError:
                value = -1
            if value >= 0 and decode_region(value) == code:
                self.index[value] = i
            else:
                stray.append((code, i))
        if stray:
            # A code that does not round-trip can still equal the decoding of
            # some stored value: match it the way Policy.region does.
            wanted = dict(stray)
            for value in range(1 << 16):
                position = wanted.get(decode_region(value))
                if position is not None:
                    self.index[value] = position

    def of(self, code: int) -> int:
        return int(self.index[code])

    def pair(self, a: int, b: int) -> RegionRules:
        """Policy.pair for two region indexes."""
        key = (a, b)
        rules = self._pairs.get(key)
        if rules is None:
            ra, rb = self.rules[a], self.rules[b]
            rules = self._pairs[key] = ra if ra == rb else ra.stricter(rb)
        return rules

    def values_for(self, viewer: int) -> dict[str, np.ndarray]:
        """Per RegionRules field, the pair's value for a candidate of each
        region index (int64, indexed like ``rules``)."""
        out = self._per_viewer.get(viewer)
        if out is None:
            pairs = [self.pair(viewer, i) for i in range(len(self.rules))]
            out = {name: np.array([int(getattr(r, name)) for r in pairs], np.int64)
                   for name in RegionRules.__dataclass_fields__}
            self._per_viewer[viewer] = out
        return out
