"""Guardian oversight: consent-token links, controls that only tighten,
and a security audit log the child can read.

State is durable: every change is appended (and fsynced) to a JSON-lines
journal that is replayed on start; audit records older than the retention
are dropped when the journal is loaded."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from dataclasses import dataclass, field, replace
from enum import IntEnum
from pathlib import Path
from typing import Any

from graph.clock import Clock

log = logging.getLogger(__name__)

MAX_GUARDIANS = 2
TOKEN_TTL_S = 7 * 86400.0
DEFAULT_AUDIT_RETENTION_S = 365 * 86400.0


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
    "precondition", "not_found", "exists", "invalid"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Controls:
    suggestions_enabled: bool = True
    messaging: Messaging = Messaging.PLATFORM_DEFAULT
    removed: frozenset[int] = frozenset()

    def strictest(self, other: "Controls") -> "Controls":
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


@dataclass
class _Child:
    links: dict[str, float] = field(default_factory=dict)  # guardian -> link time
    controls: dict[str, Controls] = field(default_factory=dict)  # per guardian


def issue_consent_token(key: bytes, guardian_id: str, child: int, issued: float) -> str:
    """What the backend hands the guardian once the teen accepted."""
    stamp = str(int(issued))
    mac = hmac.new(key, f"{guardian_id}|{child}|{stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


class GuardianRegistry:
    def __init__(self, key: bytes, clock: Clock, journal: Path | None = None,
                 audit_retention_s: float = DEFAULT_AUDIT_RETENTION_S, token_ttl_s: float = TOKEN_TTL_S) -> None:
        self._key = key
        self._clock = clock
        self._journal_path = journal
        self._retention = audit_retention_s
        self._token_ttl = token_ttl_s
        self._lock = threading.RLock()
        self._children: dict[int, _Child] = {}
        self._audit: list[AuditRecord] = []
        # Linked child -> (contact, UTC day number) -> messages sent; counts
        # only, never content, kept for the overview's week.
        self._messages: dict[int, dict[tuple[int, int], int]] = {}
        # Bumped on every change; the safety engine caches by it.
        self.version = 0
        if journal is not None:
            self._replay(journal)
            journal.parent.mkdir(parents=True, exist_ok=True)
        self._journal = open(journal, "a", encoding="utf-8") if journal is not None else None

    # -- persistence ---------------------------------------------------
    def _replay(self, path: Path) -> None:
        if not path.exists():
            return
        horizon = self._clock.now() - self._retention
        good = 0
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    # A torn last line from a crash: everything before it stands.
                    log.warning("guardian journal %s:%d unreadable; ignoring the rest", path, line_no)
                    break
                self._apply(rec, horizon)
                good += 1
        log.info("guardian journal replayed: %d records", good)

    def _write(self, rec: dict[str, Any]) -> None:
        if self._journal is not None:
            self._journal.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self._journal.flush()
            os.fsync(self._journal.fileno())
        self._apply(rec, float("-inf"))

    def _apply(self, rec: dict[str, Any], horizon: float) -> None:
        op = rec["op"]
        child = int(rec["child"])
        state = self._children.setdefault(child, _Child())
        if op == "link":
            state.links[rec["guardian"]] = rec["time"]
        elif op == "unlink":
            state.links.pop(rec["guardian"], None)
            state.controls.pop(rec["guardian"], None)
        elif op == "controls":
            state.controls[rec["guardian"]] = Controls(rec["suggestions"], Messaging(rec["messaging"]),
                                                       frozenset(rec["removed"]))
        elif op == "audit":
            if rec["time"] >= horizon:
                self._audit.append(AuditRecord(rec["time"], AuditAction(rec["action"]), rec["guardian"], child,
                                               rec["detail"]))
        self.version += 1

    def _audit_write(self, action: AuditAction, guardian: str, child: int, detail: str) -> None:
        self._write({"op": "audit", "time": self._clock.now(), "action": int(action), "guardian": guardian,
                     "child": child, "detail": detail})

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    # -- checks --------------------------------------------------------
    def _verify_token(self, guardian: str, child: int, token: str) -> bool:
        try:
            stamp, mac = token.split(".")
            issued = float(int(stamp))
        except ValueError:
            return False
        expected = issue_consent_token(self._key, guardian, child, issued).split(".")[1]
        now = self._clock.now()
        return hmac.compare_digest(mac, expected) and issued <= now + 300 and now - issued <= self._token_ttl

    def _deny(self, guardian: str, child: int, why: str) -> GuardianError:
        self._audit_write(AuditAction.DENIED, guardian, child, why)
        log.warning("guardian call denied", extra={"fields": {"guardian": guardian, "child": child, "why": why}})
        return GuardianError("permission", why)

    def _require_link(self, guardian: str, child: int, child_is_minor: bool) -> None:
        state = self._children.get(child)
        if state is None or guardian not in state.links:
            raise self._deny(guardian, child, "no link between this guardian and this child")
        if not child_is_minor:
            self._end_links_for_adult(child)
            raise self._deny(guardian, child, "the child is an adult; the link has ended")

    def _end_links_for_adult(self, child: int) -> None:
        state = self._children.get(child)
        if state is None:
            return
        for guardian in list(state.links):
            self._write({"op": "unlink", "child": child, "guardian": guardian})
            self._audit_write(AuditAction.LINK_ENDED_ADULT, guardian, child, "the child became an adult")

    # -- operations ----------------------------------------------------
    def link(self, guardian: str, child: int, token: str, *, child_known: bool, child_is_minor: bool) -> float:
        with self._lock:
            if not guardian:
                raise GuardianError("invalid", "guardian_id: must be set")
            if not self._verify_token(guardian, child, token):
                raise self._deny(guardian, child, "consent token missing, forged or expired")
            if not child_known:
                raise GuardianError("precondition", "child_user_id: unknown user")
            if not child_is_minor:
                raise GuardianError("precondition", "child_user_id: the user is an adult; guardians link to minors")
            state = self._children.setdefault(child, _Child())
            if guardian in state.links:
                raise GuardianError("exists", "this guardian is already linked to this child")
            if len(state.links) >= MAX_GUARDIANS:
                raise GuardianError("precondition", f"the child already has {MAX_GUARDIANS} guardians")
            now = self._clock.now()
            self._write({"op": "link", "child": child, "guardian": guardian, "time": now})
            self._audit_write(AuditAction.LINK, guardian, child, "linked with the child's consent")
            return now

    def unlink(self, guardian: str, child: int, *, by_child: bool) -> None:
        with self._lock:
            state = self._children.get(child)
            if state is None or guardian not in state.links:
                raise GuardianError("not_found", "no such link")
            self._write({"op": "unlink", "child": child, "guardian": guardian})
            self._audit_write(AuditAction.UNLINK, guardian, child,
                              "unlinked by the child" if by_child else "unlinked by the guardian")

    def set_controls(self, guardian: str, child: int, *, child_is_minor: bool, suggestions_enabled: bool | None,
                     messaging: Messaging | None, add_removed: list[int]) -> Controls:
        with self._lock:
            self._require_link(guardian, child, child_is_minor)
            state = self._children[child]
            old = state.controls.get(guardian, Controls())
            new = old
            if suggestions_enabled is not None:
                if suggestions_enabled and not old.suggestions_enabled:
                    raise GuardianError("precondition", "suggestions_enabled: controls can only tighten")
                new = replace(new, suggestions_enabled=suggestions_enabled)
            if messaging not in (None, Messaging.UNSPECIFIED):
                assert messaging is not None
                if messaging < old.messaging:
                    raise GuardianError("precondition", "messaging: controls can only tighten")
                new = replace(new, messaging=messaging)
            if add_removed:
                new = replace(new, removed=new.removed | frozenset(add_removed))
            if new != old:
                self._write({"op": "controls", "child": child, "guardian": guardian,
                             "suggestions": new.suggestions_enabled, "messaging": int(new.messaging),
                             "removed": sorted(new.removed)})
                self._audit_write(AuditAction.CONTROLS_CHANGED, guardian, child, _describe(old, new))
            return self.effective(child) or Controls()

    def record_overview_read(self, guardian: str, child: int, *, child_is_minor: bool) -> Controls:
        with self._lock:
            self._require_link(guardian, child, child_is_minor)
            self._audit_write(AuditAction.OVERVIEW_READ, guardian, child, "read the overview")
            return self.effective(child) or Controls()

    # -- reads ---------------------------------------------------------
    def effective(self, child: int) -> Controls | None:
        """The strictest of every linked guardian's controls, or None."""
        state = self._children.get(child)
        if state is None or not state.links:
            return None
        live = [c for g, c in state.controls.items() if g in state.links]
        if not live:
            return None
        out = live[0]
        for c in live[1:]:
            out = out.strictest(c)
        return out

    def controlled_children(self) -> dict[int, Controls]:
        """Every child with controls in force (external ids)."""
        with self._lock:
            out = {}
            for child in self._children:
                c = self.effective(child)
                if c is not None:
                    out[child] = c
            return out

    def links_of(self, child: int) -> dict[str, float]:
        state = self._children.get(child)
        return dict(state.links) if state else {}

    def audit_of(self, child: int) -> list[AuditRecord]:
        with self._lock:
            return [r for r in self._audit if r.child == child]

    def observe_message(self, sender: int, recipient: int, when: float) -> None:
        """Count a message a linked child sent (ignored for everyone else)."""
        state = self._children.get(sender)
        if state is None or not state.links:
            return
        day = int(when // 86400)
        with self._lock:
            counts = self._messages.setdefault(sender, {})
            counts[(recipient, day)] = counts.get((recipient, day), 0) + 1
            horizon = day - 8
            for key in [k for k in counts if k[1] < horizon]:
                del counts[key]

    def message_days(self, child: int, now: float, days: int = 7) -> dict[int, dict[int, int]]:
        """Contact -> {day number: messages} over the last ``days`` days."""
        first = int(now // 86400) - days + 1
        out: dict[int, dict[int, int]] = {}
        with self._lock:
            for (contact, day), n in self._messages.get(child, {}).items():
                if day >= first:
                    out.setdefault(contact, {})[day] = n
        return out

    def end_links_if_adult(self, child: int, child_is_minor: bool) -> None:
        if not child_is_minor:
            with self._lock:
                self._end_links_for_adult(child)


def _describe(old: Controls, new: Controls) -> str:
    parts = []
    if old.suggestions_enabled != new.suggestions_enabled:
        parts.append(f"suggestions {'on' if new.suggestions_enabled else 'off'}")
    if old.messaging != new.messaging:
        parts.append(f"messaging {new.messaging.name.lower()}")
    added = new.removed - old.removed
    if added:
        parts.append(f"removed contacts {sorted(added)}")
    return "; ".join(parts)
