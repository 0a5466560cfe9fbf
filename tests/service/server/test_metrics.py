"""Prometheus metrics on their own port: after some traffic the endpoint
exposes latency per method and code, candidates per source, removals per
safety reason, snapshot id and age, graph size, WAL lag and the lanes."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contactgraph.v1 import (
    safety_service_pb2,
    safety_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)

if TYPE_CHECKING:
    from tests.support.server import RunningServer

pytestmark = pytest.mark.integration


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
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
    matches = [v for l, v in samples.get(name, []) if all(l.get(k) == x for k, x in labels.items())]
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
        m = _scrape(port)
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
        assert _value(m, "contactgraph_snapshot_age_seconds") >= 0
        assert _value(m, "contactgraph_graph_users") == running.server.state.store.n_rows
        assert _value(m, "contactgraph_graph_edges", kind="follows") > 0
        assert _value(m, "contactgraph_wal_events_since_snapshot") == 0
        assert _value(m, "contactgraph_rpc_lane_capacity", lane="send") > 0
        assert _value(m, "contactgraph_rpc_in_flight", lane="default") == 0

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
            m = _scrape(running.server.metrics_endpoint.port)
            assert _value(m, "contactgraph_rpc_in_flight", lane="default") == 1
            opened.set()
            first.result(timeout=5)
        m = _scrape(running.server.metrics_endpoint.port)
        assert _value(m, "contactgraph_rpc_shed_total", lane="default", reason="overloaded") == 1
        assert _value(m, "contactgraph_rpc_duration_seconds_count", method="SuggestionService/SuggestContacts",
                      code="RESOURCE_EXHAUSTED") == 1
