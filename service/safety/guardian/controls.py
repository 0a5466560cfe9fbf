"""What a guardian sets and what the child can read about it: the
controls (which only tighten), the audit record, and the error a refused
guardian call raises."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

MAX_GUARDIANS = 2


class Messaging(IntEnum):
    """Mirrors contactgraph.v1.GuardianMessaging; larger is stricter."""

    UNSPECIFIED = 0
    PLATFORM_DEFAULT = 1
    FRIENDS_ONLY = 2
    NO_ONE = 3


class AuditAction(IntEnum):
    """Mirrors contactgraph.v1.AuditAction."""

    UNSPECIFIED = 0
    LINK = 1
    UNLINK = 2
    CONTROLS_CHANGED = 3
    OVERVIEW_READ = 4
    DENIED = 5
    LINK_ENDED_ADULT = 6


class GuardianError(Exception):
    """A refused guardian call. ``kind`` is one of "permission",
    "precondition", "not_found", "exists", "invalid"; ``reason`` (an
    ErrorInfo reason) and ``field`` (the request field at fault) refine it
    when set."""

    def __init__(self, kind: str, message: str, *, reason: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason
        self.field = field



@dataclass(frozen=True)
class Controls:
    suggestions_enabled: bool = True
    messaging: Messaging = Messaging.PLATFORM_DEFAULT
    removed: frozenset[int] = frozenset()

    def strictest(self, other: Controls) -> Controls:
        return Controls(
            self.suggestions_enabled and other.suggestions_enabled,
            max(self.messaging, other.messaging),
            self.removed | other.removed,
        )


@dataclass(frozen=True)
class AuditRecord:
    time: float
    action: AuditAction
    guardian_id: str
    child: int
    detail: str



def describe_change(old: Controls, new: Controls) -> str:
    parts = []
    if old.suggestions_enabled != new.suggestions_enabled:
        parts.append(f"suggestions {'on' if new.suggestions_enabled else 'off'}")
    if old.messaging != new.messaging:
        parts.append(f"messaging {new.messaging.name.lower()}")
    added = new.removed - old.removed
    if added:
        parts.append(f"removed contacts {sorted(added)}")
    return "; ".join(parts)
