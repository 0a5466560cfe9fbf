"""Opaque page tokens bound to viewer, surface and snapshot.

A token carries the ids already shown in this walk (so no user appears on
two pages even when the ranking moves) and an expiry. Tokens travel through
clients and their logs, so they are encrypted, not only signed: AES-256-GCM
(authenticated encryption) under a key derived with HKDF-SHA256 from a
configured secret; nothing in a token (the viewer, the ids shown) can be
read without the key, and any change to it is refused.

Keys rotate: the first key seals new tokens, every key opens them, so a
deployment adds the new key in front of the old one, and drops the old one
once the tokens it sealed have expired (``ttl_s``)."""

from __future__ import annotations

import base64
import json
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.server.config import MIN_KEY_BYTES

# Bounds the token size: a walk ends after this many suggestions.
MAX_WALK = 500
_NONCE_BYTES = 12
# Bound into every token (associated data) and into the key derivation, so
# neither a token nor a key of another format or purpose is ever accepted.
_FORMAT = b"contactgraph.page_token.v2"
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


def _derive(secret: bytes) -> AESGCM:
    if len(secret) < MIN_KEY_BYTES:
        raise ValueError(f"a page token key must be at least {MIN_KEY_BYTES} bytes, got {len(secret)}")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_FORMAT).derive(secret)
    return AESGCM(key)


class PageTokens:
    """``keys``: one secret, or several (the first seals, all open)."""

    def __init__(self, keys: bytes | Sequence[bytes], ttl_s: float) -> None:
        secrets = [keys] if isinstance(keys, bytes) else list(keys)
        if not secrets:
            raise ValueError("page tokens need at least one key")
        self._ciphers = [_derive(k) for k in secrets]
        self._ttl_s = ttl_s

    def _seal(self, body: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        return f"{_b64(nonce)}.{_b64(self._ciphers[0].encrypt(nonce, body, _FORMAT))}"

    def issue(self, viewer: int, surface: int, snapshot_id: str, shown: list[int], now: float) -> str:
        payload = {"v": viewer, "s": surface, "n": snapshot_id, "e": round(now + self._ttl_s, 3),
                   "shown": shown}
        return self._seal(zlib.compress(json.dumps(payload, separators=(",", ":")).encode()))

    def _open(self, token: str) -> bytes:
        if not _TOKEN.match(token):
            raise PageTokenError("page_token is malformed")
        try:
            nonce_text, sealed_text = token.split(".")
            nonce, sealed = _unb64(nonce_text), _unb64(sealed_text)
        except ValueError:
            raise PageTokenError("page_token is malformed") from None
        if len(nonce) == _NONCE_BYTES:
            for cipher in self._ciphers:
                try:
                    return cipher.decrypt(nonce, sealed, _FORMAT)
                except InvalidTag:
                    continue
        raise PageTokenError("page_token was not issued by this service or was altered")

    def read(self, token: str, *, viewer: int, surface: int, snapshot_id: str, now: float) -> PageState:
        body = self._open(token)
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
