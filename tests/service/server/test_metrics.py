"""Prometheus metrics on their own port: after some traffic the endpoint
exposes latency per method and code (ours and the standard gRPC series),
candidates per source, removals per safety reason, snapshot id and build
time, graph size, WAL lag and fsyncs, the lanes and the process."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contactgraph.v1 import (
    graph_service_pb2,
    graph_service_pb2_grpc,
    safety_service_pb2,
    safety_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)
from graph.clock import ManualClock
from service.server.config import WalConfig
from service.server.server import Server, build_safety, create_server
from service.server.state import open_serving
from tests.conftest import SERVE_TIME, TinyNetwork
from tests.support.rpc import edge
from tests.support.server import server_config

if TYPE_CHECKING:
    from tests.support.server import RunningServer

pytestmark = pytest.mark.integration


def start_wal_server(snapshot_dir: Path, data_dir: Path) -> Server:
    """A server over the snapshot with a real write-ahead log in data_dir
    and a metrics endpoint on a free port (the caller stops it)."""
    clock = ManualClock(SERVE_TIME)
    config = server_config(snapshot_dir, data_dir=data_dir, wal=WalConfig(data_dir / "wal"), metrics_port=0)
    state, journal = open_serving(config, clock, safety=build_safety(config, clock))
    server, _ = create_server(config, state, journal)
    return server


@pytest.fixture
def wal_server(tiny_network: TinyNetwork, tmp_path: Path) -> Iterator[Server]:
    server = start_wal_server(tiny_network.snapshot_dir, tmp_path)
    yield server
    server.stop(0)


def follow_request() -> graph_service_pb2.ApplyEventsRequest:
    return graph_service_pb2.ApplyEventsRequest(events=[edge("follow", 1, 2, "metrics-follow-1")])


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """{sample name: [(labels, value)]} from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matches = [v for have, v in samples.get(name, []) if all(have.get(k) == x for k, x in labels.items())]
    assert matches, f"no sample {name} {labels}; have {sorted(samples)}"
    return sum(matches)


class TestMetricsEndpoint:
    def test_off_by_default(self, server: RunningServer) -> None:
        """Without a metrics port no HTTP endpoint is started."""
        assert server.server.metrics_endpoint is None

    def test_named_series_after_traffic(self, server_factory: Callable[..., RunningServer]) -> None:
        """Suggestions, a check and a bad request show up as latency per
        method and code, candidates per source, removals per reason; the
        data's state is there too."""
        running = server_factory(metrics_port=0)
        assert running.server.metrics_endpoint is not None
        port = running.server.metrics_endpoint.port
        with grpc.insecure_channel(running.target) as channel:
            stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
            for _ in range(3):
                stub.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=1), timeout=5)
            with pytest.raises(grpc.RpcError):
                stub.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=-1), timeout=5)
            safety_service_pb2_grpc.SafetyServiceStub(channel).CheckMessaging(
                safety_service_pb2.CheckMessagingRequest(sender_id=1, recipient_id=2), timeout=5)
        m = scrape(port)
        suggest = "SuggestionService/SuggestContacts"
        assert _value(m, "contactgraph_rpc_duration_seconds_count", method=suggest, code="OK") == 3
        assert _value(m, "contactgraph_rpc_duration_seconds_count", method=suggest, code="INVALID_ARGUMENT") == 1
        assert _value(m, "contactgraph_rpc_duration_seconds_count", method="SafetyService/CheckMessaging",
                      code="OK") == 1
        assert _value(m, "contactgraph_rpc_duration_seconds_bucket", method=suggest, code="OK", le="+Inf") == 3
        # The tiny network: friends-of-friends finds candidates, and the
        # unsafe ones are removed for named reasons.
        assert _value(m, "contactgraph_candidates_total", source="friends_of_friends") > 0
        assert _value(m, "contactgraph_filtered_total", reason="account_state") > 0
        assert _value(m, "contactgraph_filtered_total", reason="blocked") > 0
        assert _value(m, "contactgraph_ranked_total") > 0
        snapshot_id = running.server.state.snapshot_id
        assert _value(m, "contactgraph_snapshot_info", snapshot_id=snapshot_id) == 1
        built = _value(m, "contactgraph_snapshot_built_timestamp_seconds")
        assert built == running.server.state.snapshot.manifest["created_time"]
        assert 0 < built <= time.time()
        assert _value(m, "contactgraph_snapshot_last_event_timestamp_seconds") == \
            running.server.state.snapshot.manifest["last_event_time"]
        assert _value(m, "contactgraph_graph_last_event_timestamp_seconds") == \
            running.server.state.store.last_event_time
        assert "contactgraph_snapshot_age_seconds" not in m
        assert _value(m, "contactgraph_graph_users") == running.server.state.store.n_rows
        assert _value(m, "contactgraph_graph_edges", kind="follows") > 0
        assert _value(m, "contactgraph_wal_events_since_snapshot") == 0
        assert _value(m, "contactgraph_rpc_lane_capacity", lane="send") > 0
        assert _value(m, "contactgraph_rpc_in_flight", lane="default") == 0

    def test_standard_grpc_series(self, server_factory: Callable[..., RunningServer]) -> None:
        """The go-grpc-prometheus series: handled per full service name,
        method and grpc-go code name, latency per method, one message in
        per unary call and one out per success; process series too."""
        running = server_factory(metrics_port=0)
        assert running.server.metrics_endpoint is not None
        with grpc.insecure_channel(running.target) as channel:
            stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
            for _ in range(2):
                stub.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=1), timeout=5)
            with pytest.raises(grpc.RpcError):
                stub.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=-1), timeout=5)
        m = scrape(running.server.metrics_endpoint.port)
        call = {"grpc_type": "unary", "grpc_service": "contactgraph.v1.SuggestionService",
                "grpc_method": "SuggestContacts"}
        assert _value(m, "grpc_server_handled_total", grpc_code="OK", **call) == 2
        assert _value(m, "grpc_server_handled_total", grpc_code="InvalidArgument", **call) == 1
        assert _value(m, "grpc_server_handling_seconds_count", **call) == 3
        assert _value(m, "grpc_server_handling_seconds_bucket", le="+Inf", **call) == 3
        assert _value(m, "grpc_server_started_total", **call) == 3
        assert _value(m, "grpc_server_msg_received_total", **call) == 3
        assert _value(m, "grpc_server_msg_sent_total", **call) == 2
        assert _value(m, "process_resident_memory_bytes") > 0
        assert _value(m, "process_cpu_seconds_total") > 0
        assert "python_info" in m

    def test_wal_fsync_latency(self, wal_server: Server) -> None:
        """With a write-ahead log, its fsyncs are exported as a count and a
        sum of seconds that match the log's own totals."""
        assert wal_server.metrics_endpoint is not None
        wal = wal_server.journal.wal
        assert wal is not None
        with grpc.insecure_channel(f"127.0.0.1:{wal_server.port}") as channel:
            graph_service_pb2_grpc.GraphServiceStub(channel).ApplyEvents(follow_request(), timeout=5)
        m = scrape(wal_server.metrics_endpoint.port)
        assert wal.fsyncs >= 1
        assert _value(m, "contactgraph_wal_fsync_seconds_count") == wal.fsyncs
        assert _value(m, "contactgraph_wal_fsync_seconds_sum") == pytest.approx(wal.fsync_seconds)
        assert _value(m, "contactgraph_wal_fsyncs_total") == wal.fsyncs
        assert _value(m, "contactgraph_wal_appends_total") == wal.appends

    def test_refusals_are_counted(self, server_factory: Callable[..., RunningServer]) -> None:
        """A call refused for overload shows as RESOURCE_EXHAUSTED latency
        and a shed count for its lane and reason."""
        running = server_factory(metrics_port=0, workers=1, queue=0)
        assert running.server.metrics_endpoint is not None
        opened, entered = threading.Event(), threading.Semaphore(0)
        pipeline = running.server.state.pipeline
        original = pipeline.suggest

        def blocked(*args: Any, **kwargs: Any) -> Any:
            entered.release()
            opened.wait(10)
            return original(*args, **kwargs)

        pipeline.suggest = blocked  # type: ignore[method-assign]
        request = suggestion_service_pb2.SuggestContactsRequest(user_id=1)
        with grpc.insecure_channel(running.target) as channel:
            stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
            first = stub.SuggestContacts.future(request, timeout=10)
            assert entered.acquire(timeout=5)
            with pytest.raises(grpc.RpcError) as err:
                stub.SuggestContacts(request, timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            m = scrape(running.server.metrics_endpoint.port)
            assert _value(m, "contactgraph_rpc_in_flight", lane="default") == 1
            opened.set()
            first.result(timeout=5)
        m = scrape(running.server.metrics_endpoint.port)
        assert _value(m, "contactgraph_rpc_shed_total", lane="default", reason="overloaded") == 1
        assert _value(m, "contactgraph_rpc_duration_seconds_count", method="SuggestionService/SuggestContacts",
                      code="RESOURCE_EXHAUSTED") == 1
