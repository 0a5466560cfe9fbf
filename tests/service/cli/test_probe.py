"""The probe client against a real server on a loopback port."""

from __future__ import annotations

import json

import pytest

from service.cli.probe import Endpoint, health
from tests.support.server import RunningServer

pytestmark = pytest.mark.integration


class TestHealth:
    def test_json_output_names_the_target_address(self, server: RunningServer) -> None:
        """`probe health --json` prints JSON with the target as its address
        (it used to fail: the Endpoint object is not JSON serialisable)."""
        text, ok = health(Endpoint(server.target), True, 5.0)
        out = json.loads(text)
        assert ok and out["ok"] is True
        assert out["target"] == server.target
        assert set(out["services"].values()) == {"SERVING"}
