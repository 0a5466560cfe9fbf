"""`probe load` times paced requests from when they were due, so a stalled
server's delay to the sends queued behind it shows (no coordinated
omission)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest

from service.cli.load import LoadSpec, run_load

SLOW_PATH = "/test.Slow/Call"
SERVICE_S = 0.1  # every answer takes this long


@pytest.fixture
def slow_server() -> Iterator[str]:
    """A gRPC server on loopback whose one method answers after SERVICE_S."""
    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(SERVICE_S)
        return b""

    handler = grpc.method_handlers_generic_handler("test.Slow", {"Call": grpc.unary_unary_rpc_method_handler(call)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


class TestPacedLatency:
    def test_latency_counts_from_the_scheduled_send(self, slow_server: str) -> None:
        """One connection, 20 qps (a request due every 50 ms), 5 requests,
        answers taking 100 ms: request 4 is due at 200 ms but cannot be
        sent before the 4 ahead of it are answered (400 ms), so it is
        answered no earlier than 500 ms, 300 ms after it was due. Timed from
        its actual send it would look like 100 ms. The result says which
        clock it used and keeps the service time apart."""
        result = run_load(LoadSpec(target=slow_server, users=np.array([1, 2], np.int64), path=SLOW_PATH,
                                   concurrency=1, qps=20, requests=5, duration_s=None, timeout_s=5.0))
        assert result.ok == 5, result
        assert result.latency_from == "scheduled send"
        assert result.latency_ms["max"] >= 290.0, result.latency_ms
        assert result.service_time_ms["max"] < result.latency_ms["max"] - 100.0, result
        assert result.service_time_ms["p50"] >= SERVICE_S * 1000 * 0.9
        assert "no coordinated omission" in result.table()

    def test_a_closed_loop_times_from_the_send(self, slow_server: str) -> None:
        """Without pacing nothing is scheduled: latency is timed from the
        send, and the table says so."""
        result = run_load(LoadSpec(target=slow_server, users=np.array([1, 2], np.int64), path=SLOW_PATH,
                                   concurrency=1, requests=3, duration_s=None, timeout_s=5.0))
        assert result.latency_from == "send" and not result.service_time_ms
        assert result.latency_ms["max"] < 290.0
        assert "send time (closed loop)" in result.table()
