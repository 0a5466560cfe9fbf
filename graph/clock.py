"""The one injectable clock everything that depends on "now" reads."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock set by hand: rebuilds and evaluations run "as of" a moment."""

    def __init__(self, start: float) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        with self._lock:
            self._now = float(when)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
