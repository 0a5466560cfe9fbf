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
    def __init__(self, keep: int = 16, retention_s: float = 8 * DAY, sweep_every: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        # Impressions older than every window that reads them are forgotten
        # in a sweep every ``sweep_every`` recorded impressions, so memory is
        # bounded by the traffic of the window, not of the process's life.
        self._retention_s = retention_s
        self._sweep_every = sweep_every
        self._since_sweep = 0
        self._shown: dict[int, dict[int, deque[float]]] = defaultdict(dict)
        self._exposure: dict[int, tuple[int, int]] = {}  # candidate -> (day, count)
        # (day, highest count of any candidate that day): lets the cap rule
        # skip its per-candidate look-ups while nobody is near a cap.
        self._peak: tuple[int, int] = (0, 0)
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
                count = n + 1 if d == day else 1
                self._exposure[c] = (day, count)
                peak_day, peak = self._peak
                if day > peak_day or (day == peak_day and count > peak):
                    self._peak = (day, count)
                for r in rs:
                    self._by_reason[viewer][(day, r)] += 1
            self._since_sweep += len(candidates)
            if self._since_sweep >= self._sweep_every:
                self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Drop what no window can read any more; caller holds the lock."""
        self._since_sweep = 0
        horizon = now - max(self._retention_s, 0.0)
        for viewer in list(self._shown):
            shown = self._shown[viewer]
            for c in [c for c, times in shown.items() if times[-1] < horizon]:
                del shown[c]
            if not shown:
                del self._shown[viewer]
        today = int(now // DAY)
        for c in [c for c, (d, _) in self._exposure.items() if d < today]:
            del self._exposure[c]
        first_day = int(horizon // DAY)
        for viewer in list(self._by_reason):
            counts = self._by_reason[viewer]
            for key in [k for k in counts if k[0] < first_day]:
                del counts[key]
            if not counts:
                del self._by_reason[viewer]

    def size(self) -> int:
        """Pairs remembered (for tests and metrics)."""
        with self._lock:
            return sum(len(d) for d in self._shown.values())

    def fatigued(self, viewer: int, candidates: np.ndarray, max_impressions: int, window_s: float,
                 now: float) -> np.ndarray:
        out = np.zeros(candidates.shape[0], bool)
        # Remember enough impressions per pair for the policy in force (a
        # pair shown more often than we keep would never look fatigued).
        if max_impressions > self._keep or window_s > self._retention_s:
            with self._lock:
                self._keep = max(self._keep, max_impressions)
                self._retention_s = max(self._retention_s, window_s)
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
        out = np.zeros(candidates.shape[0], np.int64)
        with self._lock:
            get = self._exposure.get
            for i, c in enumerate(candidates.tolist()):
                seen = get(c)
                if seen is not None and seen[0] == day:
                    out[i] = seen[1]
        return out

    def peak_today(self, now: float) -> int | float:
        """At least the most times any one candidate was shown on ``now``'s
        UTC day: no candidate's ``exposures_today`` exceeds it. Infinite
        when impressions of a later day were recorded (a request that read
        the clock just before midnight), since the peak of an earlier day is
        not kept."""
        day, peak = self._peak
        today = int(now // DAY)
        if day == today:
            return peak
        return 0 if day < today else float("inf")

    def shown_by_reason(self, viewer: int, now: float, days: int = 7) -> dict[str, int]:
        first = int(now // DAY) - days + 1
        with self._lock:
            out: dict[str, int] = defaultdict(int)
            for (day, reason), n in self._by_reason.get(viewer, {}).items():
                if day >= first:
                    out[reason] += n
            return dict(out)
