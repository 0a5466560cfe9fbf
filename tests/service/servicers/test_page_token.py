"""service/servicers/page_token.py: opaque (encrypted and authenticated) page
tokens bound to viewer, surface and snapshot, that expire; keys that rotate."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.servicers.page_token import MAX_WALK, PageState, PageTokenError, PageTokens

KEY = b"k" * 32
TTL = 600.0
NOW = 1_700_000_000.0
VIEWER, SURFACE, SNAPSHOT = 42, 1, "snap-0123456789abcdef"
SHOWN = [7, 3, 2**63 - 1, 12]


def _tokens(key: bytes = KEY, ttl: float = TTL) -> PageTokens:
    return PageTokens(key, ttl)


def _issue(tokens: PageTokens | None = None, **kw: object) -> str:
    args: dict[str, object] = {"viewer": VIEWER, "surface": SURFACE, "snapshot_id": SNAPSHOT,
                               "shown": SHOWN, "now": NOW}
    args.update(kw)
    return (tokens or _tokens()).issue(**args)  # type: ignore[arg-type]


def _read(token: str, tokens: PageTokens | None = None, **kw: object) -> PageState:
    args: dict[str, object] = {"viewer": VIEWER, "surface": SURFACE, "snapshot_id": SNAPSHOT, "now": NOW + 1}
    args.update(kw)
    return (tokens or _tokens()).read(token, **args)  # type: ignore[arg-type]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _signed(body: bytes, tokens: PageTokens | None = None) -> str:
    """A token whose body is ``body``, correctly sealed with the key."""
    return (tokens or _tokens())._seal(body)


class TestRoundTrip:
    def test_read_returns_what_was_issued(self) -> None:
        """A token reads back as its viewer, surface, snapshot, the shown ids
        in order, and an expiry one time-to-live after issue."""
        state = _read(_issue())
        assert (state.viewer, state.surface, state.snapshot_id) == (VIEWER, SURFACE, SNAPSHOT)
        assert state.shown == tuple(SHOWN)
        assert state.expires == pytest.approx(NOW + TTL, abs=1e-3)

    def test_empty_and_full_walks(self) -> None:
        """An empty shown list and a full walk of MAX_WALK ids both round-trip."""
        assert _read(_issue(shown=[])).shown == ()
        full = list(range(10**12, 10**12 + MAX_WALK))
        assert _read(_issue(shown=full)).shown == tuple(full)

    def test_token_is_url_safe_text(self) -> None:
        """A token is two unpadded URL-safe base64 parts joined by a dot, so
        it travels in URLs and JSON untouched."""
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", _issue())

    def test_full_walk_token_stays_small(self) -> None:
        """Even a walk at its bound makes a token of a few kilobytes."""
        assert len(_issue(shown=list(range(10**12, 10**12 + MAX_WALK)))) < 8192

    def test_same_key_other_instance_reads_it(self) -> None:
        """Tokens depend on the key only, not on the instance that issued them."""
        assert _read(_issue(_tokens()), _tokens()).shown == tuple(SHOWN)


class TestTamper:
    def test_any_single_character_change_is_refused_or_harmless(self) -> None:
        """Changing any one character either is refused or (a non-canonical
        base64 spelling of the same bytes) reads back the very same state:
        no alteration is ever accepted with different content."""
        token = _issue()
        original = _read(token)
        refused = 0
        for i, ch in enumerate(token):
            for new in {"A", "z", "0", "-", "_", "."} - {ch}:
                altered = token[:i] + new + token[i + 1:]
                try:
                    state = _read(altered)
                except PageTokenError:
                    refused += 1
                    continue
                assert state == original, (i, new)
        assert refused > len(token) * 4

    @pytest.mark.parametrize("part", [0, 1], ids=["nonce", "ciphertext"])
    def test_each_flipped_byte_is_refused(self, part: int) -> None:
        """Flipping any byte of the nonce or of the ciphertext (with its
        tag) is refused as not issued by this service."""
        pieces = _issue().split(".")
        raw = base64.urlsafe_b64decode(pieces[part] + "=" * (-len(pieces[part]) % 4))
        for i in range(len(raw)):
            flipped = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1:]
            altered = list(pieces)
            altered[part] = _b64(flipped)
            with pytest.raises(PageTokenError, match="not issued by this service or was altered"):
                _read(".".join(altered))

    def test_signature_of_another_token_is_refused(self) -> None:
        """A nonce with the ciphertext of another genuine token is refused."""
        a = _issue(shown=[1]).split(".")
        b = _issue(shown=[1, 2]).split(".")
        with pytest.raises(PageTokenError):
            _read(f"{a[0]}.{b[1]}")

    @pytest.mark.parametrize("token", ["", ".", "abc", "a.b.c", "....", "é.é", "====.====", "x" * 10_000,
                                       "not a token", "\x00.\x00"])
    def test_garbage_is_malformed_or_unsigned(self, token: str) -> None:
        """Text that is not a token raises PageTokenError, never anything else."""
        with pytest.raises(PageTokenError):
            _read(token)

    @pytest.mark.parametrize("body", [
        b"not zlib at all",
        zlib.compress(b"not json"),
        zlib.compress(b"[1, 2, 3]"),
        zlib.compress(json.dumps({"v": 42, "s": 1, "n": "snap"}).encode()),  # no "e", no "shown"
        zlib.compress(json.dumps({"v": "x", "s": 1, "n": "s", "e": 1e12, "shown": []}).encode()),
        zlib.compress(json.dumps({"v": 42, "s": 1, "n": "s", "e": 1e12, "shown": 5}).encode()),
        zlib.compress(json.dumps({"v": 42, "s": 1, "n": "s", "e": 1e12, "shown": ["a"]}).encode()),
    ], ids=["not-zlib", "not-json", "not-object", "missing-keys", "bad-viewer", "shown-not-list",
            "shown-not-ints"])
    def test_signed_but_malformed_payload_is_malformed(self, body: bytes) -> None:
        """A correctly sealed body that does not hold a token's fields is
        refused as malformed (defence in depth should the key leak)."""
        with pytest.raises(PageTokenError, match="malformed"):
            _read(_signed(body))

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=200))
    def test_arbitrary_text_only_ever_raises_page_token_error(self, token: str) -> None:
        """Whatever text arrives, read raises PageTokenError (which the
        servicer turns into INVALID_ARGUMENT) and nothing else."""
        with pytest.raises(PageTokenError):
            _read(token)


class TestForeignKey:
    def test_token_of_another_key_is_refused(self) -> None:
        """A token signed with another key (another deployment, or a key
        rotated at restart) is refused."""
        with pytest.raises(PageTokenError, match="not issued by this service"):
            _read(_issue(_tokens(b"other-key" * 4)))

    def test_signature_is_checked_before_the_content(self) -> None:
        """A foreign token says nothing about its content: it is refused for
        its signature even when it also names another viewer."""
        token = _issue(_tokens(b"other-key" * 4), viewer=7)
        with pytest.raises(PageTokenError, match="not issued by this service"):
            _read(token)


class TestExpiry:
    def test_valid_until_the_ttl_has_passed(self) -> None:
        """A token reads until its time-to-live has passed and is refused as
        expired after."""
        token = _issue()
        assert _read(token, now=NOW + TTL - 0.01).shown == tuple(SHOWN)
        with pytest.raises(PageTokenError, match="expired"):
            _read(token, now=NOW + TTL + 0.01)
        with pytest.raises(PageTokenError, match="expired"):
            _read(token, now=NOW + 10 * TTL)

    def test_ttl_comes_from_the_issuer(self) -> None:
        """The expiry is fixed at issue with the issuer's time-to-live."""
        token = _issue(_tokens(ttl=5.0))
        assert _read(token, _tokens(ttl=10_000.0), now=NOW + 4.9)
        with pytest.raises(PageTokenError, match="expired"):
            _read(token, _tokens(ttl=10_000.0), now=NOW + 5.1)


class TestBindings:
    @pytest.mark.parametrize(("binding", "message"), [
        ({"viewer": VIEWER + 1}, "another user"),
        ({"surface": 2}, "another surface"),
        ({"surface": 0}, "another surface"),
        ({"snapshot_id": "snap-fedcba9876543210"}, "another snapshot"),
    ], ids=["viewer", "surface", "unspecified-surface", "snapshot"])
    def test_token_works_only_for_its_binding(self, binding: dict[str, object], message: str) -> None:
        """A token is refused for another viewer, surface or snapshot, and
        the error says which."""
        token = _issue()
        assert _read(token)
        with pytest.raises(PageTokenError, match=message):
            _read(token, **binding)

    def test_error_is_a_value_error(self) -> None:
        """PageTokenError is a ValueError, the family of bad-input errors."""
        assert issubclass(PageTokenError, ValueError)


# Ids large enough that their spellings cannot turn up in random bytes by
# chance (13 decimal digits, 6-byte varints).
BIG_IDS = [10**12 + 7 * i + 3 for i in range(40)]
BIG_VIEWER = 4_398_046_511_104 + 17


def _spellings(uid: int) -> list[bytes]:
    """Ways an id could be written in a token: decimal text, JSON, varint,
    and 8-byte integers either way round."""
    varint = bytearray()
    n = uid
    while True:
        byte, n = n & 0x7F, n >> 7
        varint.append(byte | (0x80 if n else 0))
        if not n:
            break
    return [str(uid).encode(), json.dumps(uid).encode(), bytes(varint), uid.to_bytes(8, "big"),
            uid.to_bytes(8, "little")]


def _readable(token: str) -> list[bytes]:
    """Everything a reader without the key gets from a token: each part
    base64-decoded, and decompressed where it decompresses."""
    out = []
    for part in token.split("."):
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        out.append(raw)
        for wbits in (15, -15, 31):
            with contextlib.suppress(zlib.error):
                out.append(zlib.decompress(raw, wbits))
    return out


class TestOpaque:
    def test_no_user_id_in_clear(self) -> None:
        """Neither the viewer nor any shown id can be read from a token:
        decoded (and decompressed where possible) it holds none of their
        decimal, JSON, varint or 8-byte spellings."""
        token = _issue(viewer=BIG_VIEWER, shown=BIG_IDS)
        assert _read(token, viewer=BIG_VIEWER).shown == tuple(BIG_IDS)
        readable = _readable(token)
        for uid in [BIG_VIEWER, *BIG_IDS]:
            for spelling in _spellings(uid):
                assert not any(spelling in blob for blob in readable), uid

    def test_same_state_twice_gives_different_tokens(self) -> None:
        """Each token has a fresh nonce: two tokens of the same walk do not
        even show that they are equal."""
        assert _issue() != _issue()


class TestKeys:
    def test_rotation_old_key_second_opens_old_tokens(self) -> None:
        """Keys (new, old): tokens sealed with old still open; new tokens
        are sealed with new, so a reader with only old refuses them."""
        old, new = b"o" * 32, b"n" * 32
        token = _issue(PageTokens(old, TTL))
        rotated = PageTokens([new, old], TTL)
        assert _read(token, rotated).shown == tuple(SHOWN)
        fresh = _issue(rotated)
        assert _read(fresh, PageTokens(new, TTL)).shown == tuple(SHOWN)
        with pytest.raises(PageTokenError, match="not issued by this service"):
            _read(fresh, PageTokens(old, TTL))

    def test_short_or_missing_keys_are_refused(self) -> None:
        """A key under 16 bytes, or no key at all, is a ValueError."""
        with pytest.raises(ValueError, match="at least 16 bytes"):
            PageTokens(b"short", TTL)
        with pytest.raises(ValueError, match="at least one key"):
            PageTokens([], TTL)
