"""Guardian consent tokens (issues 19 and 20): the HS256 JWT format and
its strict validation, single use across unlinks, the end of a link at
adulthood and restarts, the legacy format for one release, and per-link
message counts. The registry alone, no server (see
test_guardian_integration.py for the same over gRPC)."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from graph.clock import ManualClock
from service.safety.guardian import (
    CONSENT_AUDIENCE,
    CONSENT_LEEWAY_S,
    MAX_GUARDIANS,
    TOKEN_TTL_S,
    GuardianError,
    GuardianRegistry,
    issue_consent_token,
    issue_legacy_consent_token,
    verify_consent,
)
from service.safety.guardian import BadToken as _BadToken

KEY = b"consent-test-guardian-key-0123456789"
T0 = 1_700_000_000.0
CHILD = 30
G = "guardian-1"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": str(CHILD), "aud": CONSENT_AUDIENCE, "iat": int(T0), "exp": int(T0 + 3600),
                              "guardian_id": G, "jti": "j-1"}
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


_DROP = object()


def _mint(**changes: Any) -> str:
    return jwt.encode(_claims(**changes), KEY, algorithm="HS256")


# (name, token, now) -> refused; each names the claim or problem.
REFUSED: list[tuple[str, str, float, str]] = [
    ("empty", "", T0, "missing"),
    ("garbage", "not a token", T0, "JWT"),
    ("other_key", jwt.encode(_claims(), b"another-key-of-32-bytes-or-more!!", algorithm="HS256"), T0, "JWT"),
    ("hs512", jwt.encode(_claims(), KEY * 2, algorithm="HS512"), T0, "JWT"),
    ("alg_none", _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + ".", T0, "JWT"),
    ("no_exp", _mint(exp=_DROP), T0, "exp"),
    ("no_iat", _mint(iat=_DROP), T0, "iat"),
    ("no_jti", _mint(jti=_DROP), T0, "jti"),
    ("no_aud", _mint(aud=_DROP), T0, "aud"),
    ("other_aud", _mint(aud="some-other-service"), T0, "JWT"),
    ("other_child", _mint(sub="33"), T0, "sub"),
    ("child_as_number", _mint(sub=CHILD), T0, "(?i)sub"),
    ("other_guardian", _mint(guardian_id="someone-else"), T0, "guardian_id"),
    ("no_guardian", _mint(guardian_id=_DROP), T0, "guardian_id"),
    ("empty_jti", _mint(jti=""), T0, "jti"),
    ("long_jti", _mint(jti="j" * 129), T0, "jti"),
    ("lifetime_above_ttl", _mint(exp=int(T0 + TOKEN_TTL_S + 1)), T0, "exp"),
    ("expired_beyond_leeway", _mint(), T0 + 3600 + CONSENT_LEEWAY_S + 1, "exp"),
    ("issued_in_the_future", _mint(iat=int(T0 + CONSENT_LEEWAY_S + 5), exp=int(T0 + 7200)), T0, "iat"),
    ("not_before", _mint(nbf=int(T0 + 600)), T0, "nbf"),
    ("iat_not_a_number", _mint(iat="yesterday"), T0, "(?i)iat|issued"),
    ("too_long", "a" * 5000, T0, "longer"),
    ("legacy_forged", "1700000000." + "0" * 64, T0, "forged"),
]


class TestTokenFormat:
    @pytest.mark.parametrize("name, token, now, says", REFUSED, ids=[r[0] for r in REFUSED])
    def test_refused(self, name: str, token: str, now: float, says: str) -> None:
        """Strict validation: the algorithm is pinned to HS256; sub, aud,
        iat, exp, guardian_id and jti are required and must match; exp at
        most 7 days after iat; 30 s of leeway; the message names the
        claim."""
        with pytest.raises(_BadToken, match=says):
            verify_consent(KEY, token, G, CHILD, now)

    @pytest.mark.parametrize("now", [T0 - CONSENT_LEEWAY_S, T0, T0 + 3600 + CONSENT_LEEWAY_S])
    def test_accepted_within_leeway(self, now: float) -> None:
        """A token is good from iat - leeway to exp + leeway."""
        consent = verify_consent(KEY, _mint(), G, CHILD, now)
        assert (consent.token_id, consent.issued, consent.expires) == ("jti:j-1", T0, T0 + 3600)

    def test_minted_by_any_library(self) -> None:
        """What issue_consent_token mints is a plain HS256 JWT any library
        reads: the registered claims plus guardian_id."""
        token = issue_consent_token(KEY, G, CHILD, T0)
        assert jwt.get_unverified_header(token)["alg"] == "HS256"
        claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=CONSENT_AUDIENCE,
                            options={"verify_exp": False, "verify_iat": False})
        assert claims["sub"] == str(CHILD) and claims["guardian_id"] == G
        assert claims["exp"] - claims["iat"] == TOKEN_TTL_S and claims["jti"]

    def test_legacy_format_for_one_release(self) -> None:
        """The former issued.hexmac token is still accepted (with a hashed
        MAC as its single-use id), unless legacy tokens are turned off."""
        token = issue_legacy_consent_token(KEY, G, CHILD, T0)
        consent = verify_consent(KEY, token, G, CHILD, T0 + 60)
        assert consent.token_id.startswith("legacy:") and token.split(".")[1] not in consent.token_id
        assert consent.expires == T0 + TOKEN_TTL_S
        with pytest.raises(_BadToken, match="no longer accepted"):
            verify_consent(KEY, token, G, CHILD, T0 + 60, accept_legacy=False)


# --- single use ------------------------------------------------------------


def _registry(path: Path | None, clock: ManualClock) -> GuardianRegistry:
    return GuardianRegistry(KEY, clock, path)


def _link(reg: GuardianRegistry, token: str, guardian: str = G) -> float:
    return reg.link(guardian, CHILD, token, child_known=True, child_is_minor=True)


def _refusal(reg: GuardianRegistry, token: str, guardian: str = G) -> GuardianError:
    with pytest.raises(GuardianError) as err:
        _link(reg, token, guardian)
    return err.value


class TestSingleUse:
    @pytest.mark.parametrize("legacy", [False, True], ids=["jwt", "legacy"])
    def test_replay_after_unlink(self, tmp_path: Path, legacy: bool) -> None:
        """Link, tighten, unlink: the same token cannot link again (it was
        used), a restart remembers it, and the refusal is audited."""
        clock = ManualClock(T0)
        path = tmp_path / "journal.jsonl"
        reg = _registry(path, clock)
        token = (issue_legacy_consent_token if legacy else issue_consent_token)(KEY, G, CHILD, T0)
        _link(reg, token)
        reg.set_controls(G, CHILD, child_is_minor=True, suggestions_enabled=False, messaging=None, add_removed=[])
        reg.unlink(G, CHILD, by_child=True)
        err = _refusal(reg, token)
        assert (err.kind, err.reason, err.field) == ("permission", "CONSENT_TOKEN_USED", "consent_token")
        reg.close()
        reg = _registry(path, clock)
        assert _refusal(reg, token).reason == "CONSENT_TOKEN_USED"
        assert reg.links_of(CHILD) == {}
        assert reg.audit_of(CHILD)[-1].detail.startswith("consent_token: already used")

    def test_replay_after_adulthood_and_back(self, tmp_path: Path) -> None:
        """A link ended because the child became an adult is not revived by
        the consent that made it once the child is a minor again, nor by
        another token issued before the end."""
        clock = ManualClock(T0)
        reg = _registry(tmp_path / "journal.jsonl", clock)
        token, older = (issue_consent_token(KEY, G, CHILD, T0) for _ in range(2))
        _link(reg, token)
        clock.advance(10)
        reg.end_links_if_adult(CHILD, False)
        assert reg.links_of(CHILD) == {}
        assert _refusal(reg, token).reason == "CONSENT_TOKEN_USED"
        assert _refusal(reg, older).reason == "CONSENT_TOKEN_PREDATES_UNLINK"
        _link(reg, issue_consent_token(KEY, G, CHILD, clock.now()))

    def test_token_issued_before_the_last_unlink(self, tmp_path: Path) -> None:
        """Another, never used token of the pair issued before its last
        unlink is refused (also after a restart); one issued after links."""
        clock = ManualClock(T0)
        path = tmp_path / "journal.jsonl"
        reg = _registry(path, clock)
        spare = issue_consent_token(KEY, G, CHILD, T0)
        _link(reg, issue_consent_token(KEY, G, CHILD, T0))
        clock.advance(60)
        reg.unlink(G, CHILD, by_child=False)
        clock.advance(60)
        assert _refusal(reg, spare).reason == "CONSENT_TOKEN_PREDATES_UNLINK"
        reg.close()
        reg = _registry(path, clock)
        assert _refusal(reg, spare).reason == "CONSENT_TOKEN_PREDATES_UNLINK"
        # Another guardian's tokens are not affected by this pair's unlink.
        _link(reg, issue_consent_token(KEY, "other", CHILD, T0), guardian="other")
        _link(reg, issue_consent_token(KEY, G, CHILD, clock.now()))

    def test_journal_from_before_single_use(self, tmp_path: Path) -> None:
        """A journal written before tokens were single use (unlink records
        without a time) still refuses tokens issued before the unlink: the
        unlink's audit record dates it."""
        path = tmp_path / "journal.jsonl"
        old = [{"op": "link", "child": CHILD, "guardian": G, "time": T0},
               {"op": "audit", "time": T0, "action": 1, "guardian": G, "child": CHILD, "detail": "linked"},
               {"op": "unlink", "child": CHILD, "guardian": G},
               {"op": "audit", "time": T0 + 100, "action": 2, "guardian": G, "child": CHILD, "detail": "unlinked"}]
        path.write_text("".join(json.dumps(r) + "\n" for r in old))
        clock = ManualClock(T0 + 200)
        reg = _registry(path, clock)
        legacy = issue_legacy_consent_token(KEY, G, CHILD, T0)
        assert _refusal(reg, legacy).reason == "CONSENT_TOKEN_PREDATES_UNLINK"

    def test_used_tokens_forgotten_once_expired(self, tmp_path: Path) -> None:
        """Used token ids are kept only until they expire (an expired token
        is refused anyway), so the memory stays bounded."""
        clock = ManualClock(T0)
        path = tmp_path / "journal.jsonl"
        reg = _registry(path, clock)
        _link(reg, issue_consent_token(KEY, G, CHILD, T0, ttl_s=3600))
        assert len(reg._used) == 1
        clock.advance(3600 + CONSENT_LEEWAY_S + 1)
        reg.close()
        assert len(_registry(path, clock)._used) == 0

    def test_survives_erasure_rewrite_without_journal(self) -> None:
        """forget_erased rebuilds the state from records; a registry without
        a journal keeps its used tokens and link ends through it."""
        clock = ManualClock(T0)
        reg = _registry(None, clock)
        token, spare = (issue_consent_token(KEY, G, CHILD, T0) for _ in range(2))
        _link(reg, token)
        clock.advance(5)
        reg.unlink(G, CHILD, by_child=True)
        reg.link("g9", 77, issue_consent_token(KEY, "g9", 77, T0), child_known=True, child_is_minor=True)
        assert reg.forget_erased(lambda ids: {77} & set(ids)) > 0
        assert _refusal(reg, token).reason == "CONSENT_TOKEN_USED"
        assert _refusal(reg, spare).reason == "CONSENT_TOKEN_PREDATES_UNLINK"


class TestPerLinkCounts:
    def test_guardian_sees_only_messages_since_its_link(self) -> None:
        """A guardian linking later sees none of the child's earlier
        messages; a guardian who unlinks and links again starts afresh."""
        clock = ManualClock(T0)
        reg = _registry(None, clock)
        _link(reg, issue_consent_token(KEY, "mum", CHILD, T0), guardian="mum")
        reg.observe_message(CHILD, 2, clock.now())
        reg.observe_message(CHILD, 2, clock.now())
        clock.advance(60)
        _link(reg, issue_consent_token(KEY, "dad", CHILD, clock.now()), guardian="dad")
        # Sent before dad's consent, reported late: still not his to see.
        reg.observe_message(CHILD, 5, clock.now() - 30)
        reg.observe_message(CHILD, 3, clock.now())
        now = clock.now()
        assert reg.message_days(CHILD, now, guardian="mum") == {2: {int(T0 // 86400): 2},
                                                                 3: {int(now // 86400): 1},
                                                                 5: {int((now - 30) // 86400): 1}}
        assert reg.message_days(CHILD, now, guardian="dad") == {3: {int(now // 86400): 1}}
        assert reg.message_days(CHILD, now, guardian="stranger") == {}
        clock.advance(60)
        reg.unlink("mum", CHILD, by_child=True)
        clock.advance(1)
        _link(reg, issue_consent_token(KEY, "mum", CHILD, clock.now()), guardian="mum")
        assert reg.message_days(CHILD, clock.now(), guardian="mum") == {}


# --- a stateful property test against a simple oracle -------------------------------

GUARDIANS = ("a", "b", "c")
STEPS = (0.0, 1.0, 60.0, 3600.0, 3 * 86400.0)


class ConsentMachine(RuleBasedStateMachine):
    """Random mints, links, unlinks, ends at adulthood, clock steps and
    restarts against an oracle: a token links at most once, never after its
    pair's link ended later than it was issued, never expired; at most two
    guardians; the registry's links equal the oracle's after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="consent-"))
        self.clock = ManualClock(T0)
        self.reg = _registry(self.dir / "journal.jsonl", self.clock)
        self.tokens: list[tuple[str, str, float]] = []  # (token, guardian, iat)
        self.used: set[str] = set()
        self.ended: dict[str, float] = {}
        self.links: set[str] = set()

    @rule(guardian=st.sampled_from(GUARDIANS), ttl=st.sampled_from((3600.0, TOKEN_TTL_S)))
    def mint(self, guardian: str, ttl: float) -> None:
        now = self.clock.now()
        self.tokens.append((issue_consent_token(KEY, guardian, CHILD, now, ttl_s=ttl), guardian, now))

    @precondition(lambda self: bool(self.tokens))
    @rule(data=st.data())
    def link(self, data: st.DataObject) -> None:
        token, guardian, issued = data.draw(st.sampled_from(self.tokens))
        now = self.clock.now()
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        ok = (now <= exp + CONSENT_LEEWAY_S and token not in self.used and issued >= self.ended.get(guardian, issued)
              and guardian not in self.links and len(self.links) < MAX_GUARDIANS)
        try:
            _link(self.reg, token, guardian)
        except GuardianError:
            assert not ok, "a valid, unused, current token was refused"
            return
        assert ok, "a used, superseded or expired token linked"
        self.used.add(token)
        self.links.add(guardian)

    @precondition(lambda self: bool(self.links))
    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        guardian = data.draw(st.sampled_from(sorted(self.links)))
        self.reg.unlink(guardian, CHILD, by_child=data.draw(st.booleans()))
        self.links.discard(guardian)
        self.ended[guardian] = self.clock.now()

    @rule()
    def child_becomes_adult(self) -> None:
        self.reg.end_links_if_adult(CHILD, False)
        for guardian in self.links:
            self.ended[guardian] = self.clock.now()
        self.links.clear()

    @rule(seconds=st.sampled_from(STEPS))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def restart(self) -> None:
        self.reg.close()
        self.reg = _registry(self.dir / "journal.jsonl", self.clock)

    @invariant()
    def links_match(self) -> None:
        assert set(self.reg.links_of(CHILD)) == self.links

    def teardown(self) -> None:
        self.reg.close()
        shutil.rmtree(self.dir, ignore_errors=True)


ConsentMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
TestConsentMachine = ConsentMachine.TestCase


def test_jti_is_random_per_mint() -> None:
    """Two mints for the same pair at the same second differ (jti)."""
    assert issue_consent_token(KEY, G, CHILD, T0) != issue_consent_token(KEY, G, CHILD, T0)
