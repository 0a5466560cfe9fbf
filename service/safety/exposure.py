"""What the service showed: per (viewer, candidate) impressions for
fatigue, per candidate daily exposure for caps, and per viewer counts by
reason for the guardian overview. Keyed by external user ids (rows change
with a rebuilt snapshot). In memory, per process: a restart forgets."""

from __future__ import annotations

import threading
from collections import defaultdict, deque

import numpy as np

DAY = 86400.0


class ImpressionLedger:
    def __init__(self, keep: int = 16) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self._shown: dict[int, dict[int, deque[float]]] = defaultdict(dict)
        self._exposure: dict[int, tuple[int, int]] = {}  # candidate -> (day, count)
        self._by_reason: dict[int, dict[tuple[int, str], int]] = defaultdict(lambda: defaultdict(int))

    def record(self, viewer: int, candidates: list[int], reasons: list[list[str]], now: float) -> None:
        day = int(now // DAY)
        with self._lock:
            shown = self._shown[viewer]
            for c, rs in zip(candidates, reasons):
                times = shown.get(c)
                if times is None:
                    shown[c] = times = deque(maxlen=self._keep)
                elif times.maxlen is not None and times.maxlen < self._keep:
                    shown[c] = times = deque(times, maxlen=self._keep)
                times.append(now)
                d, n = self._exposure.get(c, (day, 0))
                self._exposure[c] = (day, n + 1 if d == day else 1)
                for r in rs:
                    self._by_reason[viewer][(day, r)] += 1

    def fatigued(self, viewer: int, candidates: np.ndarray, max_impressions: int, window_s: float,
                 now: float) -> np.ndarray:
        out = np.zeros(candidates.shape[0], bool)
        # Remember enough impressions per pair for the policy in force (a
        # pair shown more often than we keep would never look fatigued).
        if max_impressions > self._keep:
            with self._lock:
                self._keep = max(self._keep, max_impressions)
        shown = self._shown.get(viewer)
        if not shown:
            return out
        since = now - window_s
        with self._lock:
            for i, c in enumerate(candidates.tolist()):
                times = shown.get(c)
                if times is not None and sum(1 for t in times if t >= since) >= max_impressions:
                    out[i] = True
        return out

    def exposures_today(self, candidates: np.ndarray, now: float) -> np.ndarray:
        day = int(now // DAY)
        with self._lock:
            get = self._exposure.get
            return np.fromiter(
                ((lambda v: v[1] if v[0] == day else 0)(get(c, (day, 0))) for c in candidates.tolist()),
                np.int64, candidates.shape[0])

    def shown_by_reason(self, viewer: int, now: float, days: int = 7) -> dict[str, int]:
        first = int(now // DAY) - days + 1
        with self._lock:
            out: dict[str, int] = defaultdict(int)
            for (day, reason), n in self._by_reason.get(viewer, {}).items():
                if day >= first:
                    out[reason] += n
            return dict(out)
