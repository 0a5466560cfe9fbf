"""Page token keys (issue 19, first defect; issue 20, item 5): configured
from a key file or CONTACTGRAPH_PAGE_TOKEN_KEY, rotating (the first key
seals, all open), so a token survives a restart and crosses to another
server with the same keys, and fails cleanly with other keys; a token
reissued after an erasure no longer carries the erased id."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from service.cli import build_parser
from service.server.config import (
    PAGE_TOKEN_KEY_ENV,
    ServerConfig,
    load_page_token_keys,
    parse_page_token_keys,
)
from service.servicers.page_token import PageTokens
from tests.support.grpc_errors import expect_invalid
from tests.support.rpc import apply, erase, ids, suggest

if TYPE_CHECKING:
    from tests.conftest import TinyNetwork
    from tests.support.server import RunningServer

K1, K2, K3 = bytes(range(32)), bytes(range(32, 64)), b"\xff" * 32


def _b64(key: bytes, urlsafe: bool = False) -> str:
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(key).decode()


class TestKeyFormat:
    def test_lines_comments_and_both_alphabets(self) -> None:
        """One key per line, in order; blank and # lines skipped; standard
        or URL-safe base64, padded or not."""
        text = f"# newest first\n{_b64(K3)}\n\n{_b64(K2, urlsafe=True).rstrip('=')}\n  {_b64(K1)}  \n"
        assert parse_page_token_keys(text, "f") == (K3, K2, K1)

    def test_environment_variable_may_separate_keys_with_commas(self) -> None:
        """The variable holds one key, or several separated by commas."""
        env = {PAGE_TOKEN_KEY_ENV: f"{_b64(K2)},{_b64(K1)}"}
        assert load_page_token_keys(None, env) == (K2, K1)

    @pytest.mark.parametrize(("text", "message"), [
        ("", "holds no page token key"),
        ("# only a comment\n", "holds no page token key"),
        (f"{_b64(K1)}\nnot base64!\n", "line 2: a page token key must be base64"),
        (_b64(b"x" * 16), "line 1: a page token key must be 32 bytes"),
        (_b64(b"x" * 33), "line 1: a page token key must be 32 bytes"),
    ], ids=["empty", "comment-only", "not-base64", "short", "long"])
    def test_bad_files_are_refused_naming_the_line(self, text: str, message: str, tmp_path: Path) -> None:
        """A bad key file fails start-up with its path and line, and never
        echoes key material."""
        path = tmp_path / "keys"
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as err:
            load_page_token_keys(path, {})
        assert str(path) in str(err.value)
        assert _b64(b"x" * 16) not in str(err.value) and _b64(K1) not in str(err.value)

    def test_the_flag_wins_over_the_environment(self, tmp_path: Path) -> None:
        """A key file given on the command line is used even when the
        variable is set; without either there are no keys."""
        path = tmp_path / "keys"
        path.write_text(_b64(K1) + "\n")
        env = {PAGE_TOKEN_KEY_ENV: _b64(K2)}
        assert load_page_token_keys(path, env) == (K1,)
        assert load_page_token_keys(None, env) == (K2,)
        assert load_page_token_keys(None, {}) == ()
        assert load_page_token_keys(None, {PAGE_TOKEN_KEY_ENV: "  "}) == ()

    def test_serve_has_the_flag(self, tmp_path: Path) -> None:
        """``serve --page-token-key-file FILE`` parses."""
        args = build_parser().parse_args(["serve", "--snapshot", str(tmp_path), "--page-token-key-file", "k"])
        assert args.page_token_key_file == "k"

    def test_config_refuses_short_keys(self, tmp_path: Path) -> None:
        """ServerConfig refuses a key too short to be a secret."""
        with pytest.raises(ValueError, match="page token key 2 is 5 bytes"):
            ServerConfig(snapshot=tmp_path, token_keys=(K1, b"short"))


def _first_page(server: RunningServer) -> tuple[list[int], str]:
    with grpc.insecure_channel(server.target) as channel:
        page = suggest(channel, 1, page_size=2)
    assert page.next_page_token
    return ids(page), page.next_page_token


def _next_page(server: RunningServer, token: str) -> list[int]:
    with grpc.insecure_channel(server.target) as channel:
        return ids(suggest(channel, 1, page_size=2, page_token=token))


@pytest.mark.integration
class TestAcrossServers:
    def test_token_survives_a_restart_with_the_same_key(
            self, server_factory: Callable[..., RunningServer]) -> None:
        """A server stopped and a new one started with the same key (a
        restart, a deploy) continues the walk: the next page holds no one
        already shown."""
        first = server_factory(token_keys=(K1,))
        shown, token = _first_page(first)
        first.server.stop(0)
        second = server_factory(token_keys=(K1,))
        page = _next_page(second, token)
        assert page and not set(page) & set(shown)

    def test_token_crosses_to_another_server_with_the_same_key(
            self, server_factory: Callable[..., RunningServer]) -> None:
        """Two servers (replicas) with the same key read each other's tokens."""
        a, b = server_factory(token_keys=(K1,)), server_factory(token_keys=(K1,))
        shown, token = _first_page(a)
        page = _next_page(b, token)
        assert page and not set(page) & set(shown)

    def test_another_key_fails_cleanly(self, server_factory: Callable[..., RunningServer]) -> None:
        """A server with other keys (or a random one) answers
        INVALID_ARGUMENT naming page_token, reason INVALID_PAGE_TOKEN."""
        _, token = _first_page(server_factory(token_keys=(K1,)))
        for other in (server_factory(token_keys=(K2,)), server_factory()):
            with grpc.insecure_channel(other.target) as channel:
                text, info = expect_invalid(lambda: suggest(channel, 1, page_size=2, page_token=token),
                                            "page_token")
            assert "not issued by this service" in text and info.reason == "INVALID_PAGE_TOKEN"

    def test_rotation_keeps_old_tokens_and_seals_with_the_new_key(
            self, server_factory: Callable[..., RunningServer]) -> None:
        """Keys (K2, K1) after (K1,): the old server's token still works;
        the tokens the rotated server issues are sealed with K2 (a server
        holding only K1 refuses them, one holding only K2 reads them)."""
        old = server_factory(token_keys=(K1,))
        shown, token = _first_page(old)
        rotated = server_factory(token_keys=(K2, K1))
        page = _next_page(rotated, token)
        assert page and not set(page) & set(shown)
        _, fresh = _first_page(rotated)
        assert _next_page(server_factory(token_keys=(K2,)), fresh)
        with grpc.insecure_channel(old.target) as channel:
            expect_invalid(lambda: suggest(channel, 1, page_size=2, page_token=fresh), "page_token")

    def test_no_key_configured_logs_a_warning(self, server_factory: Callable[..., RunningServer],
                                              caplog: pytest.LogCaptureFixture) -> None:
        """Without keys the server makes a random one and says so."""
        with caplog.at_level(logging.WARNING, logger="service.servicers.suggestion"):
            server_factory()
        assert any("no page token key configured" in r.getMessage() for r in caplog.records)


@pytest.mark.integration
class TestErasure:
    def test_reissued_token_drops_erased_ids(self, server_factory: Callable[..., RunningServer],
                                             tiny_network: TinyNetwork) -> None:
        """Erase a user shown on page 1: the token issued with page 2 no
        longer carries their id (read with the server's key), and still
        carries everyone else shown."""
        server = server_factory(token_keys=(K1,))
        shown, token = _first_page(server)
        gone = shown[0]
        with grpc.insecure_channel(server.target) as channel:
            apply(channel, erase(gone, "page-token-erase-1"))
            page = suggest(channel, 1, page_size=2, page_token=token)
        assert page.next_page_token
        state = PageTokens(K1, 600.0).read(page.next_page_token, viewer=1, surface=1,
                                           snapshot_id=server.server.state.snapshot_id, now=server.clock.now())
        assert gone not in state.shown
        assert set(state.shown) == (set(shown) | set(ids(page))) - {gone}
