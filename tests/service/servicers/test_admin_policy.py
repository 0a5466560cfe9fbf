"""AdminService.ReloadPolicy, and the paths it and LoadSnapshot may read, over
real gRPC."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from contactgraph.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)
from tests.conftest import TinyNetwork
from tests.support.grpc_errors import error_info
from tests.support.server import TEST_POLICY, RunningServer

pytestmark = pytest.mark.integration


def _stubs(target: str) -> tuple[grpc.Channel, admin_service_pb2_grpc.AdminServiceStub,
                                 suggestion_service_pb2_grpc.SuggestionServiceStub]:
    channel = grpc.insecure_channel(target)
    return (channel, admin_service_pb2_grpc.AdminServiceStub(channel),
            suggestion_service_pb2_grpc.SuggestionServiceStub(channel))


class TestReloadPolicy:
    def test_reload_applies_new_version(self, server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
        """A reload of a rewritten file puts its version in force at once:
        the next response carries it."""
        policy = tmp_path / "policy.toml"
        policy.write_text(TEST_POLICY)
        running = server_factory(policy_path=policy)
        channel, admin, suggestions = _stubs(running.target)
        with channel:
            policy.write_text(TEST_POLICY.replace("test-contract-1", "reloaded-2"))
            answer = admin.ReloadPolicy(admin_service_pb2.ReloadPolicyRequest(), timeout=5)
            assert answer.policy_version == "reloaded-2"
            page = suggestions.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=1), timeout=5)
            assert page.policy_version == "reloaded-2"

    @pytest.mark.parametrize("bad", [
        'version = "x"\n[age]\nmin_dm_band = "13_15"\n',  # below a floor
        'version = "x"\n[windows]\nunblock_cooldown_days = "soon"\n',  # wrong type
        "not toml [[[",
    ], ids=["below_floor", "wrong_type", "not_toml"])
    def test_bad_file_keeps_running_policy(self, server_factory: Callable[..., RunningServer], tmp_path: Path,
                                           bad: str) -> None:
        """A bad file is refused with FAILED_PRECONDITION and the running
        policy stays in force."""
        good = tmp_path / "policy.toml"
        good.write_text(TEST_POLICY)
        running = server_factory(policy_path=good)
        bad_file = tmp_path / "bad.toml"
        bad_file.write_text(bad)
        channel, admin, suggestions = _stubs(running.target)
        with channel:
            with pytest.raises(grpc.RpcError) as caught:
                admin.ReloadPolicy(admin_service_pb2.ReloadPolicyRequest(path=str(bad_file)), timeout=5)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "test-contract-1 stays in force" in caught.value.details()
            page = suggestions.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=1), timeout=5)
            assert page.policy_version == "test-contract-1"


def _denied(call: Callable[[], object]) -> str:
    """Run ``call``; it must be PERMISSION_DENIED (reason PATH_NOT_ALLOWED);
    returns the message."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    err = caught.value
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    info = error_info(err)
    assert (info.reason, info.metadata["field"]) == ("PATH_NOT_ALLOWED", "path"), info
    return str(err.details())


class TestAdminPaths:
    """Issue 20: LoadSnapshot and ReloadPolicy read only under the
    directories given at start; outside them the answer is the same
    PERMISSION_DENIED whether the file exists or not, and names no path."""

    @pytest.fixture
    def layout(self, tiny_network: TinyNetwork, tmp_path: Path) -> Path:
        """tmp/snaps/{current,other} (copies of the tiny snapshot),
        tmp/elsewhere/valid (one outside), tmp/snaps/evil -> tmp/elsewhere,
        tmp/policies/{policy.toml, evil.toml -> ../outside.toml}."""
        snaps = tmp_path / "snaps"
        snaps.mkdir()
        shutil.copytree(tiny_network.snapshot_dir, snaps / "current")
        shutil.copytree(tiny_network.snapshot_dir, snaps / "other")
        (tmp_path / "elsewhere").mkdir()
        shutil.copytree(tiny_network.snapshot_dir, tmp_path / "elsewhere" / "valid")
        (snaps / "evil").symlink_to(tmp_path / "elsewhere")
        policies = tmp_path / "policies"
        policies.mkdir()
        (policies / "policy.toml").write_text(TEST_POLICY)
        (tmp_path / "outside.toml").write_text(TEST_POLICY.replace("test-contract-1", "outside-1"))
        (policies / "evil.toml").symlink_to(tmp_path / "outside.toml")
        return tmp_path

    def test_load_snapshot_outside_is_denied(self, server_factory: Callable[..., RunningServer],
                                             layout: Path) -> None:
        """A snapshot outside (even a valid one), `..` out of the snapshot
        directory, a symlink inside pointing out, /etc/shadow and a missing
        file outside all get the same PERMISSION_DENIED naming no path; a
        snapshot beside the served one still loads, and a missing one there
        is refused as before."""
        running = server_factory(layout / "snaps" / "current", policy_path=layout / "policies" / "policy.toml")
        channel, admin, _ = _stubs(running.target)
        served = running.server.state.snapshot_id
        with channel:
            def load(path: str) -> object:
                return admin.LoadSnapshot(admin_service_pb2.LoadSnapshotRequest(path=path), timeout=30)

            messages = set()
            for path in (str(layout / "elsewhere" / "valid"), str(layout / "snaps" / ".." / "elsewhere" / "valid"),
                         str(layout / "snaps" / "evil" / "valid"), "/etc/shadow", "/etc/passwd",
                         "/no/such/dir", f"{layout}/snaps/current/../../../../../../etc", "bad\0path"):
                text = _denied(lambda path=path: load(path))
                assert "/" not in text.split("(")[0] and str(layout) not in text and "etc" not in text, text
                messages.add(text)
            assert len(messages) == 1, messages  # nothing tells existing from missing
            assert running.server.state.snapshot_id == served
            with pytest.raises(grpc.RpcError) as caught:
                load(str(layout / "snaps" / "missing"))
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert load(str(layout / "snaps" / "other")).snapshot_id  # type: ignore[attr-defined]

    def test_reload_policy_outside_is_denied(self, server_factory: Callable[..., RunningServer],
                                             layout: Path) -> None:
        """A policy file outside the started policy's directory (directly,
        by `..`, by a symlink inside pointing out) is PERMISSION_DENIED and
        the running policy stays; a file inside still loads."""
        running = server_factory(layout / "snaps" / "current", policy_path=layout / "policies" / "policy.toml")
        channel, admin, suggestions = _stubs(running.target)
        with channel:
            def reload(path: str) -> object:
                return admin.ReloadPolicy(admin_service_pb2.ReloadPolicyRequest(path=path), timeout=5)

            messages = set()
            for path in (str(layout / "outside.toml"), str(layout / "policies" / ".." / "outside.toml"),
                         str(layout / "policies" / "evil.toml"), "/etc/shadow", "/etc/no-such-file"):
                text = _denied(lambda path=path: reload(path))
                assert str(layout) not in text and "etc" not in text, text
                messages.add(text)
            assert len(messages) == 1, messages
            page = suggestions.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=1), timeout=5)
            assert page.policy_version == "test-contract-1"
            (layout / "policies" / "next.toml").write_text(TEST_POLICY.replace("test-contract-1", "next-2"))
            assert reload(str(layout / "policies" / "next.toml")).policy_version == "next-2"  # type: ignore[attr-defined]

    def test_reload_policy_without_a_policy_file_names_none(self, server_factory: Callable[..., RunningServer],
                                                            layout: Path) -> None:
        """A server started on the built-in policy reads no policy file."""
        running = server_factory(layout / "snaps" / "current", policy_path=None)
        channel, admin, _ = _stubs(running.target)
        with channel:
            _denied(lambda: admin.ReloadPolicy(
                admin_service_pb2.ReloadPolicyRequest(path=str(layout / "policies" / "policy.toml")), timeout=5))
