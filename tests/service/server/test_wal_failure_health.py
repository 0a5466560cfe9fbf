"""A server whose write-ahead log fails says so: health NOT_SERVING for
GraphService and for the whole server, and writes answer UNAVAILABLE.

How the log is made to fail: the open segment's file descriptor, inside
the running in-process server, is pointed at /dev/full with dup2, so the
kernel answers the WAL's next write(2) with ENOSPC, exactly as a full disk
would. (Tests run as root, so a read-only mode bit would not stop writes.)
No WAL code is replaced."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import graph_service_pb2, graph_service_pb2_grpc
from graph.clock import ManualClock
from service.durability.wal import WriteAheadLog
from service.server.config import WalConfig
from service.server.server import (
    GRAPH_SERVICE,
    SERVICE_NAMES,
    Server,
    build_safety,
    create_server,
)
from service.server.state import open_serving
from tests.conftest import SERVE_TIME, TinyNetwork
from tests.support.rpc import serve_time_stamp, suggest
from tests.support.server import server_config

Status = health_pb2.HealthCheckResponse


@pytest.fixture
def wal_server(tiny_network: TinyNetwork, tmp_path: Path) -> Iterator[Server]:
    """An in-process server over the tiny network with a real WAL in tmp_path."""
    clock = ManualClock(SERVE_TIME)
    config = server_config(tiny_network.snapshot_dir, data_dir=tmp_path, wal=WalConfig(tmp_path / "wal"))
    state, journal = open_serving(config, clock, safety=build_safety(config, clock))
    server, _ = create_server(config, state, journal)
    yield server
    server.stop(0)


def _follow(event_id: str, actor: int, target: int) -> graph_service_pb2.ApplyEventsRequest:
    return graph_service_pb2.ApplyEventsRequest(
        events=[ev_pb.GraphEvent(event_id=event_id, event_time=serve_time_stamp(),
                                 follow=ev_pb.Edge(actor_id=actor, target_id=target))])


def _health(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    status: int = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
    return status


def _fill_disk(wal: WriteAheadLog) -> None:
    """Point the open segment's descriptor at /dev/full (ENOSPC on write)."""
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, wal._fd)
    finally:
        os.close(full)


class TestWalFailureHealth:
    def test_a_failed_write_turns_health_and_writes_away(self, wal_server: Server) -> None:
        """Before: SERVING everywhere, ApplyEvents acknowledged. After the
        segment's write fails with ENOSPC: that batch and every later one
        answer UNAVAILABLE (ErrorInfo WAL_UNAVAILABLE, a message saying the
        server must be restarted), health is NOT_SERVING for GraphService
        and for "" (what a load balancer checks), and reads still serve."""
        wal = wal_server.journal.wal
        assert wal is not None
        with grpc.insecure_channel(f"127.0.0.1:{wal_server.port}") as channel:
            graph = graph_service_pb2_grpc.GraphServiceStub(channel)
            assert graph.ApplyEvents(_follow("ok-1", 1, 10), timeout=10).applied == 1
            assert {name: _health(channel, name) for name in ("", *SERVICE_NAMES)} == \
                {name: Status.SERVING for name in ("", *SERVICE_NAMES)}

            _fill_disk(wal)
            for event_id in ("lost-1", "lost-2"):
                with pytest.raises(grpc.RpcError) as caught:
                    graph.ApplyEvents(_follow(event_id, 1, 11), timeout=10)
                call = caught.value
                assert call.code() == grpc.StatusCode.UNAVAILABLE
                assert "restarted" in (call.details() or "")
                status = rpc_status.from_call(call)  # type: ignore[arg-type]
                assert status is not None
                info = error_details_pb2.ErrorInfo()
                assert any(d.Unpack(info) for d in status.details)
                assert info.reason == "WAL_UNAVAILABLE"

            assert _health(channel, GRAPH_SERVICE) == Status.NOT_SERVING
            assert _health(channel, "") == Status.NOT_SERVING
            others = [name for name in SERVICE_NAMES if name != GRAPH_SERVICE]
            assert all(_health(channel, name) == Status.SERVING for name in others)
            assert wal.failed is not None and "No space left" in str(wal.failed)
            assert suggest(channel, 1).suggestions
