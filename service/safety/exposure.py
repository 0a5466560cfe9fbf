"""What the service showed: per (viewer, candidate) impressions for
fatigue, per candidate daily exposure for caps, and per viewer counts by
reason for the guardian overview. Keyed by external user ids (rows change
with a rebuilt snapshot). In memory, per process: a restart forgets.

Stored in flat dicts whose keys are ints and whose values are ints or
bytes, so the garbage collector never tracks them: the ledger grows with
traffic after start-up (when the snapshot is frozen out of the collector's
sight), and with a container per pair (deques, nested dicts, tuples) each
full collection walked every impression of the last days, stalling every
call in the process for milliseconds, then seconds as the ledger grew."""

from __future__ import annotations

import struct
import threading

import numpy as np

DAY = 86400.0

_TIME = struct.Struct("d")  # native, as memoryview.cast reads it
_PAIR = 1 << 64  # (viewer, candidate) -> viewer * _PAIR + candidate + _ID_OFFSET
_ID_OFFSET = 1 << 63  # int64 ids -> [0, 2**64)
_COUNT = 1 << 32  # (day, count) -> day * _COUNT + count
_DAY_OFFSET = 1 << 39  # days (negative before 1970) -> [0, 2**40)
_REASONS = 1 << 16


def _pair(viewer: int, candidate: int) -> int:
    return viewer * _PAIR + candidate + _ID_OFFSET


def _times(packed: bytes) -> memoryview[float]:
    """The float64 times of one pair, oldest first."""
    return memoryview(packed).cast("d")


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
        # _pair(viewer, candidate) -> its last ``_keep`` times, packed float64
        self._shown: dict[int, bytes] = {}
        # viewer -> when it was last shown anyone (no entry: never)
        self._viewers: dict[int, float] = {}
        self._exposure: dict[int, int] = {}  # candidate -> day * _COUNT + count
        # (day, highest count of any candidate that day): lets the cap rule
        # skip its per-candidate look-ups while nobody is near a cap.
        self._peak: tuple[int, int] = (0, 0)
        # _reason_key(viewer, day, reason) -> impressions shown for it
        self._by_reason: dict[int, int] = {}
        self._reason_ids: dict[str, int] = {}
        self._reason_names: list[str] = []

    def _reason_key(self, viewer: int, day: int, reason: str) -> int:
        rid = self._reason_ids.get(reason)
        if rid is None:
            rid = self._reason_ids[reason] = len(self._reason_names)
            self._reason_names.append(reason)
            if rid >= _REASONS:
                raise ValueError(f"more than {_REASONS} distinct suggestion reasons")
        return (viewer * (2 * _DAY_OFFSET) + day + _DAY_OFFSET) * _REASONS + rid

    def record(self, viewer: int, candidates: list[int], reasons: list[list[str]], now: float) -> None:
        day = int(now // DAY)
        packed_now = _TIME.pack(now)
        with self._lock:
            shown, exposure = self._shown, self._exposure
            width = 8 * self._keep
            for c, rs in zip(candidates, reasons, strict=True):
                key = _pair(viewer, c)
                times = shown.get(key, b"") + packed_now
                shown[key] = times if len(times) <= width else times[-width:]
                seen = exposure.get(c)
                count = seen - day * _COUNT + 1 if seen is not None and seen // _COUNT == day else 1
                exposure[c] = day * _COUNT + count
                peak_day, peak = self._peak
                if day > peak_day or (day == peak_day and count > peak):
                    self._peak = (day, count)
                for r in rs:
                    k = self._reason_key(viewer, day, r)
                    self._by_reason[k] = self._by_reason.get(k, 0) + 1
            if candidates:
                self._viewers[viewer] = max(now, self._viewers.get(viewer, now))
            self._since_sweep += len(candidates)
            if self._since_sweep >= self._sweep_every:
                self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Drop what no window can read any more; caller holds the lock."""
        self._since_sweep = 0
        horizon = now - max(self._retention_s, 0.0)
        for key in [k for k, times in self._shown.items() if _TIME.unpack_from(times, len(times) - 8)[0] < horizon]:
            del self._shown[key]
        for viewer in [v for v, last in self._viewers.items() if last < horizon]:
            del self._viewers[viewer]
        today = int(now // DAY)
        for c in [c for c, v in self._exposure.items() if v // _COUNT < today]:
            del self._exposure[c]
        first_day = int(horizon // DAY)
        for key in [k for k in self._by_reason if (k // _REASONS) % (2 * _DAY_OFFSET) - _DAY_OFFSET < first_day]:
            del self._by_reason[key]

    def size(self) -> int:
        """Pairs remembered (for tests and metrics)."""
        with self._lock:
            return len(self._shown)

    def fatigued(self, viewer: int, candidates: np.ndarray, max_impressions: int, window_s: float,
                 now: float) -> np.ndarray:
        out = np.zeros(candidates.shape[0], bool)
        # Remember enough impressions per pair for the policy in force (a
        # pair shown more often than we keep would never look fatigued).
        if max_impressions > self._keep or window_s > self._retention_s:
            with self._lock:
                self._keep = max(self._keep, max_impressions)
                self._retention_s = max(self._retention_s, window_s)
        if viewer not in self._viewers:
            return out
        since = now - window_s
        with self._lock:
            get = self._shown.get
            for i, c in enumerate(candidates.tolist()):
                times = get(_pair(viewer, c))
                if times is not None and sum(1 for t in _times(times) if t >= since) >= max_impressions:
                    out[i] = True
        return out

    def exposures_today(self, candidates: np.ndarray, now: float) -> np.ndarray:
        day = int(now // DAY)
        out = np.zeros(candidates.shape[0], np.int64)
        with self._lock:
            get = self._exposure.get
            for i, c in enumerate(candidates.tolist()):
                seen = get(c)
                if seen is not None and seen // _COUNT == day:
                    out[i] = seen - day * _COUNT
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
        """Impressions shown to ``viewer`` by reason, from ``days`` days ago
        on (including any later day the ledger holds)."""
        first = int(now // DAY) - days + 1
        out: dict[str, int] = {}
        with self._lock:
            # The latest day anything was recorded bounds the days to visit.
            for day in range(first, max(self._peak[0], first - 1) + 1):
                for reason in self._reason_names:
                    n = self._by_reason.get(self._reason_key(viewer, day, reason))
                    if n:
                        out[reason] = out.get(reason, 0) + n
        return out
