"""Opaque, signed page tokens bound to viewer, surface and snapshot.

A token carries the ids already shown in this walk (so no user appears on
two pages even when the ranking moves) and an expiry; an HMAC makes it
tamper-evident."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import zlib
from dataclasses import dataclass

# Bounds the token size: a walk ends after this many suggestions.
MAX_WALK = 500
# One spelling per token: base64 decoding alone would skip stray characters.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


class PageTokenError(ValueError):
    """A token that is malformed, tampered with, expired or foreign."""


@dataclass(frozen=True)
class PageState:
    viewer: int
    surface: int
    snapshot_id: str
    expires: float
    shown: tuple[int, ...]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    def __init__(self, key: bytes, ttl_s: float) -> None:
        self._key = key
        self._ttl_s = ttl_s

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:16]

    def issue(self, viewer: int, surface: int, snapshot_id: str, shown: list[int], now: float) -> str:
        payload = {"v": viewer, "s": surface, "n": snapshot_id, "e": round(now + self._ttl_s, 3),
                   "shown": shown}
        body = zlib.compress(json.dumps(payload, separators=(",", ":")).encode())
        return f"{_b64(body)}.{_b64(self._sign(body))}"

    def read(self, token: str, *, viewer: int, surface: int, snapshot_id: str, now: float) -> PageState:
        if not _TOKEN.match(token):
            raise PageTokenError("page_token is malformed")
        try:
            body_text, sig_text = token.split(".")
            body, sig = _unb64(body_text), _unb64(sig_text)
        except ValueError:
            raise PageTokenError("page_token is malformed") from None
        if not hmac.compare_digest(sig, self._sign(body)):
            raise PageTokenError("page_token was not issued by this service or was altered")
        try:
            payload = json.loads(zlib.decompress(body))
            state = PageState(int(payload["v"]), int(payload["s"]), str(payload["n"]), float(payload["e"]),
                              tuple(int(x) for x in payload["shown"]))
        except (ValueError, KeyError, TypeError, zlib.error):
            raise PageTokenError("page_token is malformed") from None
        if state.viewer != viewer:
            raise PageTokenError("page_token was issued for another user")
        if state.surface != surface:
            raise PageTokenError("page_token was issued for another surface")
        if state.snapshot_id != snapshot_id:
            raise PageTokenError("page_token was issued for another snapshot; start a new walk")
        if state.expires < now:
            raise PageTokenError("page_token has expired; start a new walk")
        return state
