"""Guardian oversight: consent-token links, controls that only tighten,
and a security audit log the child can read.

Consent tokens (``verify_consent``) are HS256 JWTs the backend mints when
the teen accepts: ``sub`` the child's user id, ``aud``
``CONSENT_AUDIENCE``, ``iat``, ``exp`` (at most ``TOKEN_TTL_S`` after
``iat``), ``guardian_id`` and a ``jti``. A token links once: its id is
kept in the link's journal record until it expires, and a token issued
before the last unlink of its (guardian, child) pair is refused, so neither
an unlink nor the end of a link at adulthood can be undone by replaying the
consent that made it. The former ``issued.hexmac`` format is accepted for
one release (``accept_legacy_tokens``), single use the same way.

A guardian's overview counts only the messages the child sent while that
guardian was linked (per-link counters, from the link time on): consent
given today does not open the child's past.

State is durable: every change is appended (and fsynced) to a JSON-lines
journal that is replayed on start; audit records older than the retention
are dropped when the journal is loaded.

Erasure (``forget_erased``; ``scrub_journal`` when no server has the
journal open): the journal is rewritten without an erased user's id.
- Records about an erased child (links, controls, audit) go: there is no
  one left to protect or to show them to.
- An erased user who is a guardian (a guardian id that is the user's id)
  is replaced by a pseudonym (``erased-guardian-<random>``) in links,
  controls and audit: the child keeps the protections that guardian set and
  still sees in the transparency view what they did, and may unlink them;
  the erased account itself can no longer act as that guardian.
- An erased user among another child's removed contacts is dropped from
  the list (an erased id never comes back, so nothing loosens), and audit
  details name them as "an erased user".
Records written later that name an erased user are scrubbed the same way
before they reach the journal. The journal is rewritten under a temporary
name, fsynced and renamed into place; a ``LOCK`` beside it (shared while a
registry has the journal open, exclusive while ``scrub_journal`` rewrites
it) keeps a rewrite from pulling the file from under a running server."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from pathlib import Path
from typing import Any

import jwt

from graph.clock import Clock
from graph.durable import fsync_dir
from graph.model import MAX_USER_ID

log = logging.getLogger(__name__)

MAX_GUARDIANS = 2
TOKEN_TTL_S = 7 * 86400.0
# The audience a consent token must name: this service's link call, so a
# token minted with the same key for anything else cannot link.
CONSENT_AUDIENCE = "contactgraph.v1.GuardianService/LinkGuardian"
CONSENT_ALGORITHM = "HS256"
# Clock skew tolerated between the backend that mints and this server.
CONSENT_LEEWAY_S = 30.0
MAX_CONSENT_TOKEN_CHARS = 4096
MAX_JTI_CHARS = 128
# Accepted for one release after the switch to JWTs (see docs), then gone.
ACCEPT_LEGACY_TOKENS = True
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
    "precondition", "not_found", "exists", "invalid"; ``reason`` (an
    ErrorInfo reason) and ``field`` (the request field at fault) refine it
    when set."""

    def __init__(self, kind: str, message: str, *, reason: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class Consent:
    """A verified consent token: ``token_id`` is what makes it single use
    ("jti:<jti>", or "legacy:<sha256 of the MAC>" for the old format);
    ``issued`` and ``expires`` are unix seconds."""

    token_id: str
    issued: float
    expires: float


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
    # guardian -> when its last link to this child ended (unlink or
    # adulthood); consent issued before that is refused.
    ended: dict[str, float] = field(default_factory=dict)


def issue_consent_token(key: bytes, guardian_id: str, child: int, issued: float, *, ttl_s: float = TOKEN_TTL_S,
                        jti: str | None = None, **extra: Any) -> str:
    """What the backend hands the guardian once the teen accepted: an HS256
    JWT (any JWT library can mint the same; see docs/pending/h-guardian.md).
    ``extra`` claims override the standard ones (tests use it to forge)."""
    claims: dict[str, Any] = {"sub": str(child), "aud": CONSENT_AUDIENCE, "iat": int(issued),
                              "exp": int(issued + ttl_s), "guardian_id": guardian_id,
                              "jti": secrets.token_urlsafe(16) if jti is None else jti}
    claims.update(extra)
    return jwt.encode(claims, key, algorithm=CONSENT_ALGORITHM)


def issue_legacy_consent_token(key: bytes, guardian_id: str, child: int, issued: float) -> str:
    """The former ``<issued>.<hex HMAC-SHA256 over guardian|child|issued>``
    format, accepted for one release."""
    stamp = str(int(issued))
    mac = hmac.new(key, f"{guardian_id}|{child}|{stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


class _BadToken(Exception):
    """Why a consent token is refused, in words naming the claim."""


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadToken(f"claim {name!r} must be a number (unix seconds)")
    return float(value)


def verify_consent(key: bytes, token: str, guardian_id: str, child: int, now: float, *,
                   ttl_s: float = TOKEN_TTL_S, leeway_s: float = CONSENT_LEEWAY_S,
                   accept_legacy: bool = ACCEPT_LEGACY_TOKENS) -> Consent:
    """The consent ``token`` proves for (``guardian_id``, ``child``) at
    ``now``, or _BadToken. Strict: the algorithm is pinned to HS256; ``sub``,
    ``aud``, ``iat``, ``exp``, ``guardian_id`` and ``jti`` are required;
    ``exp`` at most ``ttl_s`` after ``iat``; ``leeway_s`` of clock skew at
    either end. Times are checked against ``now`` (the server's injectable
    clock), not the wall clock."""
    if not token:
        raise _BadToken("missing")
    if len(token) > MAX_CONSENT_TOKEN_CHARS:
        raise _BadToken(f"longer than {MAX_CONSENT_TOKEN_CHARS} characters")
    if token.count(".") == 1:
        if not accept_legacy:
            raise _BadToken("the legacy issued.hexmac format is no longer accepted; send a JWT")
        return _verify_legacy(key, token, guardian_id, child, now, ttl_s, leeway_s)
    try:
        claims = jwt.decode(token, key, algorithms=[CONSENT_ALGORITHM], audience=CONSENT_AUDIENCE,
                            options={"require": ["sub", "aud", "iat", "exp", "jti"], "verify_exp": False,
                                     "verify_iat": False, "verify_nbf": False})
    except jwt.InvalidTokenError as err:
        raise _BadToken(f"not a valid HS256 JWT for this service: {err}") from None
    if claims.get("sub") != str(child):
        raise _BadToken("claim 'sub' is not child_user_id")
    if claims.get("guardian_id") != guardian_id:
        raise _BadToken("claim 'guardian_id' is not guardian_id")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
        raise _BadToken(f"claim 'jti' must be a string of 1 to {MAX_JTI_CHARS} characters")
    issued, expires = _number(claims, "iat"), _number(claims, "exp")
    if issued > now + leeway_s:
        raise _BadToken("claim 'iat' is in the future")
    if expires - issued > ttl_s:
        raise _BadToken(f"claim 'exp' is more than {ttl_s:.0f} s after 'iat'")
    if now > expires + leeway_s:
        raise _BadToken("expired (claim 'exp')")
    if "nbf" in claims and now + leeway_s < _number(claims, "nbf"):
        raise _BadToken("not valid yet (claim 'nbf')")
    return Consent("jti:" + jti, issued, expires)


def _verify_legacy(key: bytes, token: str, guardian_id: str, child: int, now: float, ttl_s: float,
                   leeway_s: float) -> Consent:
    stamp, mac = token.split(".")
    try:
        issued = float(int(stamp))
    except ValueError:
        raise _BadToken("malformed") from None
    expected = issue_legacy_consent_token(key, guardian_id, child, issued).split(".")[1]
    if not hmac.compare_digest(mac, expected):
        raise _BadToken("forged, or for another guardian or child")
    if issued > now + leeway_s:
        raise _BadToken("issued in the future")
    if now - issued > ttl_s:
        raise _BadToken("expired")
    log.warning("a legacy issued.hexmac consent token was accepted; the backend should mint JWTs",
                extra={"fields": {"guardian": guardian_id, "child": child}})
    # The MAC is bearer material: the journal keeps only its hash.
    return Consent("legacy:" + hashlib.sha256(mac.encode()).hexdigest()[:32], issued, issued + ttl_s)


# Which of these user ids are erased? (the store's ledger answers)
ErasedOf = Callable[[Iterable[int]], set[int]]


def _nobody(ids: Iterable[int]) -> set[int]:
    return set()


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
        # Linked child -> guardian -> (contact, UTC day number) -> messages
        # sent while that guardian was linked; counts only, never content,
        # kept for the overview's week (memory only).
        self._messages: dict[int, dict[str, dict[tuple[int, int], int]]] = {}
        # Bumped on every change; the safety engine caches by it.
        self.version = 0
        self._erased_of: ErasedOf = _nobody
        # Erased guardian id -> its pseudonym (memory only).
        self._pseudonyms: dict[str, str] = {}
        self._lock_fd = -1
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _journal_lock(journal, exclusive=False)
            self._replay(journal)
            self._prune_consent(self._clock.now())
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
        if self._erased_of is not _nobody:
            erased = self._erased_of(_named_ids(rec))
            if erased:
                scrubbed = _Scrubber(erased, self._pseudonyms)(rec)
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
            records = _read_journal(path) if path is not None else self._state_records()
            named = set().union(*(_named_ids(r) for r in records), self._messages,
                                (contact for per_link in self._messages.values() for counts in per_link.values()
                                 for contact, _ in counts))
            erased = erased_of(named)
            if not erased:
                return 0
            for child in erased & self._messages.keys():
                del self._messages[child]
            for per_link in self._messages.values():
                for counts in per_link.values():
                    for k in [k for k in counts if k[0] in erased]:
                        del counts[k]
            kept, changed = _scrub_all(records, _Scrubber(erased, self._pseudonyms))
            if not changed:
                return 0
            if path is not None:
                assert self._journal is not None
                _rewrite_journal(path, kept)
                self._journal.close()
                self._journal = open(path, "a", encoding="utf-8")
            self._children = {}
            self._audit = []
            self._used = {}
            horizon = self._clock.now() - self._retention
            for rec in kept:
                self._apply(rec, horizon)
            # An erased guardian's counters go with its id (its pseudonym
            # cannot read an overview).
            for child, per_link in self._messages.items():
                links = self.links_of(child)
                for guardian in [g for g in per_link if g not in links]:
                    del per_link[guardian]
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
                out.append({"op": "controls", "child": child, "guardian": guardian, "suggestions": c.suggestions_enabled,
                            "messaging": int(c.messaging), "removed": sorted(c.removed)})
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
        except _BadToken as err:
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
            self._messages.get(child, {}).pop(guardian, None)

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
            self._messages.get(child, {}).pop(guardian, None)
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
            self._messages.get(child, {}).pop(guardian, None)

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
        """Count a message a linked child sent at ``when`` for each guardian
        linked at or before ``when`` (ignored for everyone else): a guardian
        sees only what the child did after that guardian's consent."""
        state = self._children.get(sender)
        if state is None or not state.links:
            return
        day = int(when // 86400)
        with self._lock:
            for guardian, since in state.links.items():
                if when < since:
                    continue
                counts = self._messages.setdefault(sender, {}).setdefault(guardian, {})
                counts[(recipient, day)] = counts.get((recipient, day), 0) + 1
                horizon = day - 8
                for key in [k for k in counts if k[1] < horizon]:
                    del counts[key]

    def message_days(self, child: int, now: float, days: int = 7, *, guardian: str) -> dict[int, dict[int, int]]:
        """Contact -> {day number: messages} over the last ``days`` days,
        counting only messages sent while ``guardian`` was linked (its
        current link)."""
        first = int(now // 86400) - days + 1
        out: dict[int, dict[int, int]] = {}
        with self._lock:
            for (contact, day), n in self._messages.get(child, {}).get(guardian, {}).items():
                if day >= first:
                    out.setdefault(contact, {})[day] = n
        return out

    def end_links_if_adult(self, child: int, child_is_minor: bool) -> None:
        if not child_is_minor:
            with self._lock:
                self._end_links_for_adult(child)


def _mark_ended(state: _Child, guardian: str, when: float) -> None:
    state.ended[guardian] = max(state.ended.get(guardian, when), when)


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


# -- erasure helpers -------------------------------------------------------
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
_NUMBER = re.compile(r"(?<![0-9])[1-9][0-9]{0,18}(?![0-9])")
ERASED_GUARDIAN_PREFIX = "erased-guardian-"


def _as_user(text: object) -> int | None:
    """The user id a guardian id or a number in a detail spells, if any."""
    if isinstance(text, str) and _USER_ID.fullmatch(text):
        value = int(text)
        if value <= MAX_USER_ID:
            return value
    return None


def _named_ids(rec: dict[str, Any]) -> set[int]:
    """Every user id a journal record names: child, a guardian id that is a
    user id, removed contacts, numbers in an audit detail."""
    ids = {int(rec["child"])}
    guardian = _as_user(rec.get("guardian"))
    if guardian is not None:
        ids.add(guardian)
    ids.update(int(u) for u in rec.get("removed", ()))
    detail = rec.get("detail")
    if isinstance(detail, str):
        ids.update(u for u in (_as_user(m) for m in _NUMBER.findall(detail)) if u is not None)
    return {u for u in ids if 0 < u <= MAX_USER_ID}


class _Scrubber:
    """One record without the ``erased`` users (None: drop it); erased
    guardians get the same pseudonym in every record."""

    def __init__(self, erased: set[int], pseudonyms: dict[str, str]) -> None:
        self.erased = erased
        self.pseudonyms = pseudonyms

    def __call__(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        erased = self.erased
        if int(rec["child"]) in erased:
            return None
        out = rec
        guardian = rec.get("guardian")
        if _as_user(guardian) in erased:
            assert isinstance(guardian, str)
            alias = self.pseudonyms.setdefault(guardian, ERASED_GUARDIAN_PREFIX + secrets.token_hex(6))
            out = {**out, "guardian": alias}
        removed = rec.get("removed")
        if removed is not None and any(u in erased for u in removed):
            out = {**out, "removed": [u for u in removed if u not in erased]}
        detail = rec.get("detail")
        if isinstance(detail, str):
            new = _NUMBER.sub(lambda m: "an erased user" if _as_user(m.group()) in erased else m.group(), detail)
            if new != detail:
                out = {**out, "detail": new}
        return out


def _scrub_all(records: list[dict[str, Any]], scrub: _Scrubber) -> tuple[list[dict[str, Any]], int]:
    kept = []
    changed = 0
    for rec in records:
        new = scrub(rec)
        if new is not rec:
            changed += 1
        if new is not None:
            kept.append(new)
    return kept, changed


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's records up to the first unreadable line (a torn write,
    which replay ignores too)."""
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


def _rewrite_journal(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _journal_lock(journal: Path, *, exclusive: bool, wait: bool = True) -> int:
    """Hold the ``LOCK`` beside the journal; -1 if ``wait`` is off and it
    is taken."""
    fd = os.open(journal.parent / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return -1
    return fd


def scrub_journal(path: Path, erased_of: ErasedOf) -> int | None:
    """Rewrite a guardian journal that no registry has open without the
    users ``erased_of`` says are erased (as ``forget_erased`` does).
    Returns how many records were dropped or changed; None if a server
    holds the journal (it scrubs it itself)."""
    path = Path(path)
    if not path.exists():
        return 0
    fd = _journal_lock(path, exclusive=True, wait=False)
    if fd < 0:
        return None
    try:
        records = _read_journal(path)
        erased = erased_of(set().union(*(_named_ids(r) for r in records)))
        if not erased:
            return 0
        kept, changed = _scrub_all(records, _Scrubber(erased, {}))
        if changed:
            _rewrite_journal(path, kept)
        return changed
    finally:
        os.close(fd)
