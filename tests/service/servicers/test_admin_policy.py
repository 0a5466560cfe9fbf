"""AdminService.ReloadPolicy over real gRPC."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from contactgraph.v1 import admin_service_pb2, admin_service_pb2_grpc, suggestion_service_pb2
from contactgraph.v1 import suggestion_service_pb2_grpc

from tests.conftest import TEST_POLICY, RunningServer

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
