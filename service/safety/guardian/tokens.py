"""Consent tokens: the HS256 JWT the backend mints when the teen accepts a
guardian (and, for one release, the former ``issued.hexmac`` format):
minting (``issue_consent_token``, for the backend and tests) and the
strict check a link makes (``verify_consent``). Single use is the
registry's job."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Consent:
    """A verified consent token: ``token_id`` is what makes it single use
    ("jti:<jti>", or "legacy:<sha256 of the MAC>" for the old format);
    ``issued`` and ``expires`` are unix seconds."""

    token_id: str
    issued: float
    expires: float



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


class BadToken(Exception):
    """Why a consent token is refused, in words naming the claim."""


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadToken(f"claim {name!r} must be a number (unix seconds)")
    return float(value)


def verify_consent(key: bytes, token: str, guardian_id: str, child: int, now: float, *,
                   ttl_s: float = TOKEN_TTL_S, leeway_s: float = CONSENT_LEEWAY_S,
                   accept_legacy: bool = ACCEPT_LEGACY_TOKENS) -> Consent:
    """The consent ``token`` proves for (``guardian_id``, ``child``) at
    ``now``, or BadToken. Strict: the algorithm is pinned to HS256; ``sub``,
    ``aud``, ``iat``, ``exp``, ``guardian_id`` and ``jti`` are required;
    ``exp`` at most ``ttl_s`` after ``iat``; ``leeway_s`` of clock skew at
    either end. Times are checked against ``now`` (the server's injectable
    clock), not the wall clock."""
    if not token:
        raise BadToken("missing")
    if len(token) > MAX_CONSENT_TOKEN_CHARS:
        raise BadToken(f"longer than {MAX_CONSENT_TOKEN_CHARS} characters")
    if token.count(".") == 1:
        if not accept_legacy:
            raise BadToken("the legacy issued.hexmac format is no longer accepted; send a JWT")
        return _verify_legacy(key, token, guardian_id, child, now, ttl_s, leeway_s)
    try:
        claims = jwt.decode(token, key, algorithms=[CONSENT_ALGORITHM], audience=CONSENT_AUDIENCE,
                            options={"require": ["sub", "aud", "iat", "exp", "jti"], "verify_exp": False,
                                     "verify_iat": False, "verify_nbf": False})
    except jwt.InvalidTokenError as err:
        raise BadToken(f"not a valid HS256 JWT for this service: {err}") from None
    if claims.get("sub") != str(child):
        raise BadToken("claim 'sub' is not child_user_id")
    if claims.get("guardian_id") != guardian_id:
        raise BadToken("claim 'guardian_id' is not guardian_id")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
        raise BadToken(f"claim 'jti' must be a string of 1 to {MAX_JTI_CHARS} characters")
    issued, expires = _number(claims, "iat"), _number(claims, "exp")
    if issued > now + leeway_s:
        raise BadToken("claim 'iat' is in the future")
    if expires - issued > ttl_s:
        raise BadToken(f"claim 'exp' is more than {ttl_s:.0f} s after 'iat'")
    if now > expires + leeway_s:
        raise BadToken("expired (claim 'exp')")
    if "nbf" in claims and now + leeway_s < _number(claims, "nbf"):
        raise BadToken("not valid yet (claim 'nbf')")
    return Consent("jti:" + jti, issued, expires)


def _verify_legacy(key: bytes, token: str, guardian_id: str, child: int, now: float, ttl_s: float,
                   leeway_s: float) -> Consent:
    stamp, mac = token.split(".")
    try:
        issued = float(int(stamp))
    except ValueError:
        raise BadToken("malformed") from None
    expected = issue_legacy_consent_token(key, guardian_id, child, issued).split(".")[1]
    if not hmac.compare_digest(mac, expected):
        raise BadToken("forged, or for another guardian or child")
    if issued > now + leeway_s:
        raise BadToken("issued in the future")
    if now - issued > ttl_s:
        raise BadToken("expired")
    log.warning("a legacy issued.hexmac consent token was accepted; the backend should mint JWTs",
                extra={"fields": {"guardian": guardian_id, "child": child}})
    # The MAC is bearer material: the journal keeps only its hash.
    return Consent("legacy:" + hashlib.sha256(mac.encode()).hexdigest()[:32], issued, issued + ttl_s)
