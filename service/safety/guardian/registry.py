"""The guardian registry: links made with consent, controls, the audit
log and the per-link message counts, kept durable in the journal and
replayed on start (see the package docstring).

Size (over 400 lines): one class over one lock and one state (links,
controls, audit, the consent-token memory) whose methods share its
invariants; tokens, counts, controls and the journal file are the sibling
modules.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from graph.clock import Clock
from service.safety.guardian.controls import (
    MAX_GUARDIANS,
    AuditAction,
    AuditRecord,
    Controls,
    GuardianError,
    Messaging,
    describe_change,
)
from service.safety.guardian.counts import LinkCounts
from service.safety.guardian.journal import (
    ErasedOf,
    Scrubber,
    journal_lock,
    named_ids,
    nobody,
    read_journal,
    rewrite_journal,
    scrub_all,
)
from service.safety.guardian.tokens import (
    ACCEPT_LEGACY_TOKENS,
    CONSENT_LEEWAY_S,
    TOKEN_TTL_S,
    BadToken,
    Consent,
    verify_consent,
)

log = logging.getLogger(__name__)

DEFAULT_AUDIT_RETENTION_S = 365 * 86400.0


@dataclass
class _Child:
    links: dict[str, float] = field(default_factory=dict)  # guardian -> link time
    controls: dict[str, Controls] = field(default_factory=dict)  # per guardian
    # guardian -> when its last link to this child ended (unlink or
    # adulthood); consent issued before that is refused.
    ended: dict[str, float] = field(default_factory=dict)



class GuardianRegistry:
    def __init__(self, key: bytes, clock: Clock, journal: Path | None = None,
                 audit_retention_s: float = DEFAULT_AUDIT_RETENTION_S, token_ttl_s: float = TOKEN_TTL_S,
                 accept_legacy_tokens: bool = ACCEPT_LEGACY_TOKENS) -> None:
        self._key = key
        self._clock = clock
        self._journal_path = journal
        self._retention = audit_retention_s
        self._token_ttl = token_ttl_s
        self._accept_legacy = accept_legacy_tokens
        self._lock = threading.RLock()
        self._children: dict[int, _Child] = {}
        self._audit: list[AuditRecord] = []
        # Consent token id -> (expires, child, guardian): tokens that made a
        # link, kept (in the link's journal record) until they expire.
        self._used: dict[str, tuple[float, int, str]] = {}
        # Messages sent while each guardian was linked (memory only).
        self._counts = LinkCounts()
        # Bumped on every change; the safety engine caches by it.
        self.version = 0
        self._erased_of: ErasedOf = nobody
        # Erased guardian id -> its pseudonym (memory only).
        self._pseudonyms: dict[str, str] = {}
        self._lock_fd = -1
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = journal_lock(journal, exclusive=False)
            self._replay(journal)
            self._prune_consent(self._clock.now())
        # Open for the registry's life; close() closes it.
        self._journal = open(journal, "a", encoding="utf-8") if journal is not None else None  # noqa: SIM115

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
        if self._erased_of is not nobody:
            erased = self._erased_of(named_ids(rec))
            if erased:
                scrubbed = Scrubber(erased, self._pseudonyms)(rec)
                if scrubbed is None:
                    return
                rec = scrubbed
        if self._journal is not None:
            self._journal.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self._journal.flush()
            os.fsync(self._journal.fileno())
        self._apply(rec, float("-inf"))

    def _apply(self, rec: dict[str, Any], horizon: float) -> None:
        op = rec["op"]
        child = int(rec["child"])
        state = self._children.setdefault(child, _Child())
        if op == "link" or op == "consent":
            if op == "link":
                state.links[rec["guardian"]] = rec["time"]
            if "consent" in rec:
                self._used[rec["consent"]] = (float(rec["consent_exp"]), child, rec["guardian"])
        elif op == "unlink":
            state.links.pop(rec["guardian"], None)
            state.controls.pop(rec["guardian"], None)
            # Records from before consent tokens were single use carry no
            # time; their audit record (next) gives it.
            if "time" in rec:
                _mark_ended(state, rec["guardian"], rec["time"])
        elif op == "controls":
            state.controls[rec["guardian"]] = Controls(rec["suggestions"], Messaging(rec["messaging"]),
                                                       frozenset(rec["removed"]))
        elif op == "audit":
            if rec["action"] in (AuditAction.UNLINK, AuditAction.LINK_ENDED_ADULT):
                _mark_ended(state, rec["guardian"], rec["time"])
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
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- erasure -------------------------------------------------------
    def forget_erased(self, erased_of: ErasedOf) -> int:
        """Treat the users ``erased_of`` says are erased as erased from now
        on (see the module docstring): rewrite the journal and the state
        without them, and scrub later records. Returns how many records
        were dropped or changed. Raises OSError if the journal cannot be
        rewritten (it is then left as it was)."""
        with self._lock:
            self._erased_of = erased_of
            path = self._journal_path
            records = read_journal(path) if path is not None else self._state_records()
            named = set().union(*(named_ids(r) for r in records), self._counts.user_ids())
            erased = erased_of(named)
            if not erased:
                return 0
            self._counts.forget_users(erased)
            kept, changed = scrub_all(records, Scrubber(erased, self._pseudonyms))
            if not changed:
                return 0
            if path is not None:
                assert self._journal is not None
                rewrite_journal(path, kept)
                self._journal.close()
                # Open for the registry's life, as at start.
                self._journal = open(path, "a", encoding="utf-8")  # noqa: SIM115
            self._children = {}
            self._audit = []
            self._used = {}
            horizon = self._clock.now() - self._retention
            for rec in kept:
                self._apply(rec, horizon)
            # An erased guardian's counters go with its id.
            self._counts.keep_links(self.links_of)
            self.version += 1
            log.info("guardian records scrubbed of %d erased user(s): %d record(s) dropped or changed",
                     len(erased), changed)
            return changed

    def _state_records(self) -> list[dict[str, Any]]:
        """The state as journal records (for a registry without a journal)."""
        out: list[dict[str, Any]] = []
        for child, state in self._children.items():
            # First: an unlink record after the link would end it.
            for guardian, when in state.ended.items():
                out.append({"op": "unlink", "child": child, "guardian": guardian, "time": when})
        for child, state in self._children.items():
            for guardian, when in state.links.items():
                out.append({"op": "link", "child": child, "guardian": guardian, "time": when})
            for guardian, c in state.controls.items():
                out.append({"op": "controls", "child": child, "guardian": guardian,
                            "suggestions": c.suggestions_enabled, "messaging": int(c.messaging),
                            "removed": sorted(c.removed)})
        for token_id, (expires, child, guardian) in self._used.items():
            out.append({"op": "consent", "child": child, "guardian": guardian, "consent": token_id,
                        "consent_exp": expires})
        for r in self._audit:
            out.append({"op": "audit", "time": r.time, "action": int(r.action), "guardian": r.guardian_id,
                        "child": r.child, "detail": r.detail})
        return out

    # -- checks --------------------------------------------------------
    def _verify_token(self, guardian: str, child: int, token: str) -> Consent:
        try:
            return verify_consent(self._key, token, guardian, child, self._clock.now(), ttl_s=self._token_ttl,
                                  accept_legacy=self._accept_legacy)
        except BadToken as err:
            raise self._deny(guardian, child, f"consent_token: {err}", reason="CONSENT_TOKEN_INVALID",
                             field="consent_token") from None

    def _check_unused(self, guardian: str, child: int, consent: Consent) -> None:
        """A consent token links once, and never after its pair's link ended
        later than it was issued (an unlink, or the child's adulthood)."""
        if consent.token_id in self._used:
            raise self._deny(guardian, child, "consent_token: already used to link; a consent token links once",
                             reason="CONSENT_TOKEN_USED", field="consent_token")
        state = self._children.get(child)
        ended = state.ended.get(guardian) if state is not None else None
        if ended is not None and consent.issued < ended:
            raise self._deny(guardian, child, "consent_token: issued before this guardian's last link to this "
                             "child ended; the child must consent again", reason="CONSENT_TOKEN_PREDATES_UNLINK",
                             field="consent_token")

    def _prune_consent(self, now: float) -> None:
        """Forget used tokens once expired, and link ends older than any
        token still valid (both only ever refuse such tokens)."""
        for token_id in [t for t, (exp, _, _) in self._used.items() if exp + CONSENT_LEEWAY_S < now]:
            del self._used[token_id]
        oldest = now - self._token_ttl - CONSENT_LEEWAY_S
        for state in self._children.values():
            for guardian in [g for g, t in state.ended.items() if t < oldest]:
                del state.ended[guardian]

    def _deny(self, guardian: str, child: int, why: str, *, reason: str | None = None,
              field: str | None = None) -> GuardianError:
        self._audit_write(AuditAction.DENIED, guardian, child, why)
        log.warning("guardian call denied", extra={"fields": {"guardian": guardian, "child": child, "why": why}})
        return GuardianError("permission", why, reason=reason, field=field)

    def record_denial(self, guardian: str, child: int, why: str, *, reason: str | None = None,
                      field: str | None = None) -> GuardianError:
        """Audit a call the servicer refused (e.g. a caller that may not
        speak for the child) and return the error to raise."""
        with self._lock:
            return self._deny(guardian, child, why, reason=reason, field=field)

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
            self._write({"op": "unlink", "child": child, "guardian": guardian, "time": self._clock.now()})
            self._audit_write(AuditAction.LINK_ENDED_ADULT, guardian, child, "the child became an adult")
            self._counts.forget_link(child, guardian)

    # -- operations ----------------------------------------------------
    def link(self, guardian: str, child: int, token: str, *, child_known: bool, child_is_minor: bool) -> float:
        with self._lock:
            if not guardian:
                raise GuardianError("invalid", "guardian_id: must be set")
            consent = self._verify_token(guardian, child, token)
            if not child_known:
                raise GuardianError("precondition", "child_user_id: unknown user")
            if not child_is_minor:
                raise GuardianError("precondition", "child_user_id: the user is an adult; guardians link to minors")
            state = self._children.setdefault(child, _Child())
            if guardian in state.links:
                raise GuardianError("exists", "this guardian is already linked to this child")
            now = self._clock.now()
            self._prune_consent(now)
            self._check_unused(guardian, child, consent)
            if len(state.links) >= MAX_GUARDIANS:
                raise GuardianError("precondition", f"the child already has {MAX_GUARDIANS} guardians")
            # The token's id rides in the link record itself: the link and
            # the token's use are one durable write.
            self._write({"op": "link", "child": child, "guardian": guardian, "time": now,
                         "consent": consent.token_id, "consent_exp": consent.expires})
            self._counts.forget_link(child, guardian)
            self._audit_write(AuditAction.LINK, guardian, child, "linked with the child's consent")
            return now

    def unlink(self, guardian: str, child: int, *, by_child: bool) -> None:
        with self._lock:
            state = self._children.get(child)
            if state is None or guardian not in state.links:
                raise GuardianError("not_found", "no such link")
            self._write({"op": "unlink", "child": child, "guardian": guardian, "time": self._clock.now()})
            self._audit_write(AuditAction.UNLINK, guardian, child,
                              "unlinked by the child" if by_child else "unlinked by the guardian")
            self._counts.forget_link(child, guardian)

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
                self._audit_write(AuditAction.CONTROLS_CHANGED, guardian, child, describe_change(old, new))
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
        """Count a message a linked child sent at ``when`` for each guardian
        linked at or before ``when`` (ignored for everyone else): a guardian
        sees only what the child did after that guardian's consent."""
        state = self._children.get(sender)
        if state is None or not state.links:
            return
        with self._lock:
            self._counts.observe(sender, recipient, when, state.links)

    def message_days(self, child: int, now: float, days: int = 7, *, guardian: str) -> dict[int, dict[int, int]]:
        """Contact -> {day number: messages} over the last ``days`` days,
        counting only messages sent while ``guardian`` was linked (its
        current link)."""
        with self._lock:
            return self._counts.days(child, guardian, int(now // 86400) - days + 1)

    def end_links_if_adult(self, child: int, child_is_minor: bool) -> None:
        if not child_is_minor:
            with self._lock:
                self._end_links_for_adult(child)


def _mark_ended(state: _Child, guardian: str, when: float) -> None:
    state.ended[guardian] = max(state.ended.get(guardian, when), when)
