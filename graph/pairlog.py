"""Timestamped facts about ordered pairs of rows: reports, dismissals,
unfollows, unblocks. Few per user, so plain dicts, indexed both ways."""

from __future__ import annotations

import numpy as np

from .csr import ROW


class PairLog:
    def __init__(self) -> None:
        # (actor, target) -> (time, detail); newest record wins.
        self._records: dict[tuple[int, int], tuple[float, int]] = {}
        self._by_actor: dict[int, set[int]] = {}
        self._by_target: dict[int, set[int]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def record(self, actor: int, target: int, time: float, detail: int = 0) -> None:
        old = self._records.get((actor, target))
        if old is not None and old[0] > time:
            return
        self._records[(actor, target)] = (time, detail)
        self._by_actor.setdefault(actor, set()).add(target)
        self._by_target.setdefault(target, set()).add(actor)

    def get(self, actor: int, target: int) -> tuple[float, int] | None:
        return self._records.get((actor, target))

    def targets_of(self, actor: int, since: float = float("-inf")) -> np.ndarray:
        """Targets the actor has a record about at or after ``since`` (int32)."""
        targets = self._by_actor.get(actor, ())
        return np.fromiter((t for t in list(targets) if self._records[(actor, t)][0] >= since), ROW)

    def actors_about(self, target: int, since: float = float("-inf")) -> np.ndarray:
        actors = self._by_target.get(target, ())
        return np.fromiter((a for a in list(actors) if self._records[(a, target)][0] >= since), ROW)

    def forget_user(self, row: int) -> None:
        for target in self._by_actor.pop(row, set()):
            self._records.pop((row, target), None)
            self._by_target.get(target, set()).discard(row)
        for actor in self._by_target.pop(row, set()):
            self._records.pop((actor, row), None)
            self._by_actor.get(actor, set()).discard(row)

    def to_arrays(self) -> dict[str, np.ndarray]:
        items = sorted(self._records.items())
        return {
            "actor": np.array([k[0] for k, _ in items], ROW),
            "target": np.array([k[1] for k, _ in items], ROW),
            "time": np.array([v[0] for _, v in items], np.float64),
            "detail": np.array([v[1] for _, v in items], np.int16),
        }

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray]) -> PairLog:
        log = PairLog()
        for a, t, when, d in zip(arrays["actor"].tolist(), arrays["target"].tolist(),
                                 arrays["time"].tolist(), arrays["detail"].tolist(), strict=True):
            log.record(a, t, when, d)
        return log
