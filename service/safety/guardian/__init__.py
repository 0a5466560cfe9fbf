"""Guardian oversight: consent-token links, controls that only tighten,
and a security audit log the child can read.

Where things are: consent tokens in ``tokens``; the registry (links,
controls, audit, consent use) in ``registry``; what a guardian sets and
the audit record in ``controls``; the per-link message counts in
``counts``; the journal file and its erasure scrubbing in ``journal``.
This module re-exports what callers use.

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

from service.safety.guardian.controls import (
    MAX_GUARDIANS,
    AuditAction,
    AuditRecord,
    Controls,
    GuardianError,
    Messaging,
)
from service.safety.guardian.journal import ERASED_GUARDIAN_PREFIX, ErasedOf, scrub_journal
from service.safety.guardian.registry import DEFAULT_AUDIT_RETENTION_S, GuardianRegistry
from service.safety.guardian.tokens import (
    ACCEPT_LEGACY_TOKENS,
    CONSENT_ALGORITHM,
    CONSENT_AUDIENCE,
    CONSENT_LEEWAY_S,
    MAX_CONSENT_TOKEN_CHARS,
    MAX_JTI_CHARS,
    TOKEN_TTL_S,
    BadToken,
    Consent,
    issue_consent_token,
    issue_legacy_consent_token,
    verify_consent,
)

__all__ = [
    "ACCEPT_LEGACY_TOKENS",
    "CONSENT_ALGORITHM",
    "CONSENT_AUDIENCE",
    "CONSENT_LEEWAY_S",
    "DEFAULT_AUDIT_RETENTION_S",
    "ERASED_GUARDIAN_PREFIX",
    "MAX_CONSENT_TOKEN_CHARS",
    "MAX_GUARDIANS",
    "MAX_JTI_CHARS",
    "TOKEN_TTL_S",
    "AuditAction",
    "AuditRecord",
    "BadToken",
    "Consent",
    "Controls",
    "ErasedOf",
    "GuardianError",
    "GuardianRegistry",
    "Messaging",
    "issue_consent_token",
    "issue_legacy_consent_token",
    "scrub_journal",
    "verify_consent",
]
