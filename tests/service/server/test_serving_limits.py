"""Overload, deadlines, the send path's own capacity, the request-size
limit, INTERNAL for bugs and request ids in log lines: a real server on a
loopback port whose pipeline the test slows down or blocks."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from contactgraph.v1 import (
    safety_service_pb2,
    safety_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)
from service.server.lanes import Lane, LaneConfig
from service.server.request_scope import RequestIdLogFilter
from tests.support.grpc_errors import error_reason

if TYPE_CHECKING:
    from tests.conftest import TinyNetwork
    from tests.support.server import RunningServer

pytestmark = pytest.mark.integration

SUGGEST = suggestion_service_pb2.SuggestContactsRequest


def _retry_delay_s(err: grpc.RpcError) -> float:
    """The google.rpc.RetryInfo delay an error asks for, in seconds."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    found = [d for d in status.details if d.Unpack(retry)]
    assert len(found) == 1, status
    return float(retry.retry_delay.ToNanoseconds()) / 1e9


class Gate:
    """Blocks the server's suggestion pipeline until opened; counts calls
    that reached it."""

    def __init__(self, running: RunningServer) -> None:
        self.opened = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls = 0
        pipeline = running.server.state.pipeline
        original = pipeline.suggest

        def suggest(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.entered.release()
            self.opened.wait(10)
            return original(*args, **kwargs)

        pipeline.suggest = suggest  # type: ignore[method-assign]

    def wait_entered(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.entered.acquire(timeout=5), "the call never reached the pipeline"


@pytest.fixture
def limited(server_factory: Callable[..., RunningServer]) -> Iterator[tuple[RunningServer, grpc.Channel, Gate]]:
    """A server with one ordinary worker and one queue place, a blocked
    pipeline, and a channel to it."""
    running = server_factory(workers=1, queue=1, queue_timeout_s=0.3, send_workers=1, send_queue=2)
    gate = Gate(running)
    with grpc.insecure_channel(running.target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield running, channel, gate
        gate.opened.set()


class TestOverload:
    def test_past_workers_and_queue_calls_get_resource_exhausted_at_once(
            self, limited: tuple[RunningServer, grpc.Channel, Gate]) -> None:
        """One call runs, one waits, the rest are refused at once with
        RESOURCE_EXHAUSTED / SERVER_OVERLOADED; the first two then finish."""
        _, channel, gate = limited
        stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
        running = stub.SuggestContacts.future(SUGGEST(user_id=1), timeout=10)
        gate.wait_entered()
        queued = stub.SuggestContacts.future(SUGGEST(user_id=1), timeout=10)
        time.sleep(0.05)  # let it take the queue place
        started = time.perf_counter()
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as err:
                stub.SuggestContacts(SUGGEST(user_id=1), timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error_reason(err.value) == "SERVER_OVERLOADED"
            # AIP-193: an overload answer says when a retry is worth trying.
            assert _retry_delay_s(err.value) == pytest.approx(limited[0].server.config.queue_timeout_s)
        assert time.perf_counter() - started < 1.0
        gate.opened.set()
        assert running.result(timeout=5).suggestions
        assert queued.result(timeout=5).suggestions

    def test_a_call_queued_too_long_gets_resource_exhausted(
            self, limited: tuple[RunningServer, grpc.Channel, Gate]) -> None:
        """The queue is bounded in time too: after queue_timeout_s the
        waiting call is refused, and never runs."""
        _, channel, gate = limited
        stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
        first = stub.SuggestContacts.future(SUGGEST(user_id=1), timeout=10)  # (kept: dropping cancels it)
        gate.wait_entered()
        started = time.perf_counter()
        with pytest.raises(grpc.RpcError) as err:
            stub.SuggestContacts(SUGGEST(user_id=1), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 0.25 < time.perf_counter() - started < 2.0
        assert _retry_delay_s(err.value) > 0
        gate.opened.set()
        first.result(timeout=5)
        time.sleep(0.1)
        assert gate.calls == 1

    def test_the_send_path_answers_while_suggestions_are_saturated(
            self, limited: tuple[RunningServer, grpc.Channel, Gate]) -> None:
        """With every suggestion worker and queue place taken and a flood
        being refused, CheckMessaging and BatchCheckMessaging still answer,
        quickly."""
        _, channel, gate = limited
        stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
        held = stub.SuggestContacts.future(SUGGEST(user_id=1), timeout=10)
        gate.wait_entered()
        stop = threading.Event()
        refused = 0

        def flood() -> None:
            nonlocal refused
            while not stop.is_set():
                try:
                    stub.SuggestContacts(SUGGEST(user_id=1), timeout=5)
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    refused += 1

        safety = safety_service_pb2_grpc.SafetyServiceStub(channel)
        with futures.ThreadPoolExecutor(8) as pool:
            for _ in range(8):
                pool.submit(flood)
            try:
                time.sleep(0.1)
                for _ in range(30):
                    started = time.perf_counter()
                    answer = safety.CheckMessaging(
                        safety_service_pb2.CheckMessagingRequest(sender_id=1, recipient_id=2), timeout=2)
                    assert answer.allowed
                    assert time.perf_counter() - started < 0.5
                batch = safety.BatchCheckMessaging(
                    safety_service_pb2.BatchCheckMessagingRequest(sender_id=1, recipient_ids=[2, 3, 42]), timeout=2)
                assert [r.allowed for r in batch.results] == [True, True, False]
            finally:
                stop.set()
        assert refused > 10
        gate.opened.set()
        assert held.result(timeout=5).suggestions

    def test_the_send_path_has_its_own_bound(self, server_factory: Callable[..., RunningServer]) -> None:
        """Checks are bounded too: past send workers + send queue they get
        RESOURCE_EXHAUSTED, while suggestions still answer."""
        running = server_factory(send_workers=1, send_queue=0)
        opened, entered = threading.Event(), threading.Semaphore(0)
        safety = running.server.state.safety
        original = safety.check_messaging

        def blocked(*args: Any, **kwargs: Any) -> Any:
            entered.release()
            opened.wait(10)
            return original(*args, **kwargs)

        safety.check_messaging = blocked  # type: ignore[method-assign]
        request = safety_service_pb2.CheckMessagingRequest(sender_id=1, recipient_id=2)
        with grpc.insecure_channel(running.target) as channel:
            stub = safety_service_pb2_grpc.SafetyServiceStub(channel)
            first = stub.CheckMessaging.future(request, timeout=10)
            assert entered.acquire(timeout=5)
            with pytest.raises(grpc.RpcError) as err:
                stub.CheckMessaging(request, timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            suggestions = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
            assert suggestions.SuggestContacts(SUGGEST(user_id=1), timeout=5).suggestions
            opened.set()
            assert first.result(timeout=5).allowed


    def test_each_lane_runs_on_threads_of_its_own(self, server_factory: Callable[..., RunningServer]) -> None:
        """Suggestions run on the default lane's threads, checks on the send
        lane's: the send path never waits for a suggestion worker."""
        running = server_factory()
        seen: dict[str, str] = {}
        state = running.server.state
        suggest, check = state.pipeline.suggest, state.safety.check_messaging

        def spy_suggest(*args: Any, **kwargs: Any) -> Any:
            seen["suggest"] = threading.current_thread().name
            return suggest(*args, **kwargs)

        def spy_check(*args: Any, **kwargs: Any) -> Any:
            seen["check"] = threading.current_thread().name
            return check(*args, **kwargs)

        state.pipeline.suggest = spy_suggest  # type: ignore[method-assign]
        state.safety.check_messaging = spy_check  # type: ignore[method-assign]
        with grpc.insecure_channel(running.target) as channel:
            suggestion_service_pb2_grpc.SuggestionServiceStub(channel).SuggestContacts(SUGGEST(user_id=1), timeout=5)
            safety_service_pb2_grpc.SafetyServiceStub(channel).CheckMessaging(
                safety_service_pb2.CheckMessagingRequest(sender_id=1, recipient_id=2), timeout=5)
        assert seen["suggest"].startswith("rpc-default-")
        assert seen["check"].startswith("rpc-send-")


class TestDeadlines:
    def test_deadline_passing_in_the_queue_means_the_call_never_runs(
            self, limited: tuple[RunningServer, grpc.Channel, Gate]) -> None:
        """A call whose deadline passes while it waits gets
        DEADLINE_EXCEEDED and its work is never started."""
        _, channel, gate = limited
        stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
        first = stub.SuggestContacts.future(SUGGEST(user_id=1), timeout=10)
        gate.wait_entered()
        with pytest.raises(grpc.RpcError) as err:
            stub.SuggestContacts(SUGGEST(user_id=1), timeout=0.15)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.2)
        gate.opened.set()
        first.result(timeout=5)
        time.sleep(0.1)
        assert gate.calls == 1

    def test_expired_deadline_stops_the_pipeline_between_stages(
            self, server_factory: Callable[..., RunningServer]) -> None:
        """A deadline that passes while the candidate sources run gives
        DEADLINE_EXCEEDED, and the safety filters and ranker never run."""
        running = server_factory()
        pipeline = running.server.state.pipeline
        sources_for = pipeline.sources_for
        filtered = threading.Event()

        class Slow:
            def __init__(self, inner: Any) -> None:
                self.inner, self.name = inner, inner.name

            def __call__(self, row: int, now: float) -> Any:
                time.sleep(0.3)
                return self.inner(row, now)

        for surface, flow in pipeline.flows.items():
            pipeline.flows[surface] = dataclasses.replace(
                flow, sources=tuple(Slow(s) for s in sources_for(surface))[:1])
        filter_suggestions = pipeline.safety.filter_suggestions

        def spy(*args: Any, **kwargs: Any) -> Any:
            filtered.set()
            return filter_suggestions(*args, **kwargs)

        pipeline.safety.filter_suggestions = spy  # type: ignore[method-assign]
        with grpc.insecure_channel(running.target) as channel:
            stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.SuggestContacts(SUGGEST(user_id=1), timeout=0.1)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            abandoned = running.server.metrics.abandoned.labels("sources")
            deadline = time.monotonic() + 3
            while abandoned._value.get() < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert abandoned._value.get() == 1
            assert not filtered.is_set()
            # Without a deadline problem the same pipeline answers.
            assert stub.SuggestContacts(SUGGEST(user_id=1), timeout=5).suggestions
            assert filtered.is_set()


class TestLimits:
    def test_request_over_the_size_limit_is_refused(self, server_factory: Callable[..., RunningServer]) -> None:
        """Requests larger than max_request_bytes get RESOURCE_EXHAUSTED."""
        running = server_factory(max_request_bytes=4096)
        with grpc.insecure_channel(running.target) as channel:
            stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.SuggestContacts(SUGGEST(user_id=1, page_token="x" * 8000), timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert stub.SuggestContacts(SUGGEST(user_id=1), timeout=5).suggestions

    def test_unexpected_error_is_internal_with_a_generic_message(
            self, server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture) -> None:
        """A bug becomes INTERNAL "internal error" (no traceback to the
        client) and a logged traceback."""
        running = server_factory()

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret detail")

        running.server.state.pipeline.suggest = broken  # type: ignore[method-assign]
        caplog.set_level(logging.ERROR, logger="service.server.interceptors")
        with grpc.insecure_channel(running.target) as channel:
            stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.SuggestContacts(SUGGEST(user_id=1), timeout=5)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in (err.value.details() or "")
        assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records)

    def test_request_id_from_metadata_is_in_the_log_lines(
            self, server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
        """x-request-id metadata shows up as request_id in the JSON fields
        of the call's log lines."""
        caplog.set_level(logging.INFO, logger="service")
        caplog.handler.addFilter(RequestIdLogFilter())
        with grpc.insecure_channel(server.target) as channel:
            stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
            stub.SuggestContacts(SUGGEST(user_id=1), timeout=5, metadata=[("x-request-id", "req-abc-123")])
        lines = [r for r in caplog.records if r.getMessage() == "SuggestContacts"]
        assert lines and all(getattr(r, "fields", {}).get("request_id") == "req-abc-123" for r in lines)


class TestLanePool:
    def test_admits_workers_plus_queue_and_refuses_the_rest_at_once(self) -> None:
        """Submissions past workers + queue run at once on the refusal pool
        with the FULL verdict; queued ones keep FIFO order."""
        from concurrent import futures as cf

        from service.server.lanes import LanePool
        from service.server.lanes import admission as _admission

        lane = Lane("t", LaneConfig(workers=1, queue=2, queue_timeout_s=5.0))
        refusals = cf.ThreadPoolExecutor(1)
        pool = LanePool(lane, refusals)
        gate = threading.Event()
        verdicts: list[tuple[int, str]] = []

        def job(i: int) -> int:
            if i == 0:
                gate.wait(5)
            verdicts.append((i, _admission.verdict[0]))
            return i

        try:
            submitted = [pool.submit(job, i) for i in range(5)]
            assert submitted[3].result(timeout=2) == 3 and submitted[4].result(timeout=2) == 4
            assert lane.in_flight == 3
            gate.set()
            assert [f.result(timeout=5) for f in submitted] == [0, 1, 2, 3, 4]
            assert verdicts == [(3, Lane.FULL), (4, Lane.FULL), (0, Lane.OK), (1, Lane.OK), (2, Lane.OK)]
            assert lane.in_flight == 0
        finally:
            gate.set()
            pool.shutdown()
            refusals.shutdown()

    def test_expire_refuses_calls_queued_too_long(self) -> None:
        """The watchdog's expire() takes stale calls out of the queue and
        runs them with the QUEUE_TIMEOUT verdict."""
        from concurrent import futures as cf

        from service.server.lanes import LanePool
        from service.server.lanes import admission as _admission

        lane = Lane("t", LaneConfig(workers=1, queue=4, queue_timeout_s=0.05))
        refusals = cf.ThreadPoolExecutor(1)
        pool = LanePool(lane, refusals)
        gate = threading.Event()
        try:
            busy = pool.submit(gate.wait, 5)
            queued = pool.submit(lambda: _admission.verdict[0])
            time.sleep(0.1)
            assert pool.expire(time.monotonic()) == 1
            assert queued.result(timeout=2) == Lane.QUEUE_TIMEOUT
            gate.set()
            busy.result(timeout=2)
            assert lane.in_flight == 0
        finally:
            gate.set()
            pool.shutdown()
            refusals.shutdown()


class TestLane:
    def test_fifo_hand_over_and_bounds(self) -> None:
        """A lane admits workers + queue, refuses the rest at once, and
        hands a freed worker to the longest waiter."""
        lane = Lane("t", LaneConfig(workers=1, queue=2, queue_timeout_s=2.0))
        assert lane.enter(None) == Lane.OK
        order: list[int] = []

        def wait(i: int) -> None:
            assert lane.enter(None) == Lane.OK
            order.append(i)
            lane.leave()

        threads = []
        for i in range(2):
            t = threading.Thread(target=wait, args=(i,))
            t.start()
            threads.append(t)
            time.sleep(0.05)
        assert lane.enter(None) == Lane.FULL
        assert lane.in_flight == 3
        lane.leave()
        for t in threads:
            t.join(5)
        assert order == [0, 1]
        assert lane.in_flight == 0

    def test_wait_is_bounded_by_the_deadline(self) -> None:
        """A waiter whose deadline comes first gets DEADLINE, not a worker."""
        lane = Lane("t", LaneConfig(workers=1, queue=1, queue_timeout_s=5.0))
        assert lane.enter(None) == Lane.OK
        started = time.perf_counter()
        assert lane.enter(0.1) == Lane.DEADLINE
        assert time.perf_counter() - started < 1.0
        assert lane.in_flight == 1


class TestLoadTool:
    def test_bounded_by_requests_with_percentiles_and_codes(self, server: RunningServer,
                                                            tiny_network: TinyNetwork) -> None:
        """``probe load --requests N`` sends exactly N calls and reports
        QPS, latency percentiles and errors by status code."""
        import numpy as np

        from service.cli.load import LoadSpec, run_load

        users = np.array([1, 2, 3, 4, 10, 99999], np.int64)  # 99999 is unknown: an empty, explained answer
        result = run_load(LoadSpec(target=server.target, users=users, requests=60, concurrency=4, duration_s=None))
        assert result.requests == 60 and result.ok == 60 and result.errors == {}
        assert {"p50", "p90", "p99", "max"} <= set(result.latency_ms)
        assert result.qps > 0
        checks = run_load(LoadSpec(target=server.target, users=users, method="batch-check", recipients=5,
                                   requests=20, concurrency=2, duration_s=None, qps=200.0))
        assert checks.ok == 20 and checks.schedule_lag_p99_ms is not None

    def test_command_line_json_and_errors_by_code(self, server: RunningServer, tiny_network: TinyNetwork,
                                                  tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
        """The CLI reads ids from a snapshot or a file and prints JSON;
        calls that fail are counted by status code."""
        import json

        from service.cli import main

        assert main(["probe", "load", "--target", server.target, "--snapshot", str(tiny_network.snapshot_dir),
                     "--requests", "30", "--concurrency", "3", "--json", "--quiet"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["requests"] == 30 and out["ok"] == 30
        ids = tmp_path / "ids.txt"
        ids.write_text("# senders\n1\n-5\n")  # -5 is not a valid user id: INVALID_ARGUMENT
        main(["probe", "load", "--target", server.target, "--users-file", str(ids), "--method", "check",
              "--requests", "40", "--json", "--quiet"])
        out = json.loads(capsys.readouterr().out)
        assert out["requests"] == 40
        assert set(out["errors"]) == {"INVALID_ARGUMENT"}

    def test_channels_are_separate_connections(self) -> None:
        """``--channels N`` spreads the calls over N connections (processes
        sharing a port are balanced by connection), and is bounded."""
        from concurrent import futures

        import numpy as np

        from service.cli.load import LoadError, LoadSpec, run_load

        peers: list[str] = []

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            peers.append(context.peer())
            return b""

        server = grpc.server(futures.ThreadPoolExecutor(2))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "probe.Peers", {"Call": grpc.unary_unary_rpc_method_handler(answer)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            users = np.array([1, 2, 3], np.int64)
            result = run_load(LoadSpec(target=f"127.0.0.1:{port}", users=users, requests=60, concurrency=6,
                                       duration_s=None, channels=3, path="/probe.Peers/Call"))
            assert result.ok == 60
            assert len(set(peers)) == 3
        finally:
            server.stop(None)
        with pytest.raises(LoadError, match="channels"):
            LoadSpec(target="127.0.0.1:1", users=users, concurrency=2, channels=3)

    def test_unreachable_target_is_a_clear_error(self, capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
        """Nobody listening: exit code 4 (UNREACHABLE) and a message naming
        the target."""
        from service.cli import main

        ids = tmp_path / "ids.txt"
        ids.write_text("1\n2\n")
        assert main(["probe", "load", "--target", "127.0.0.1:1", "--users-file", str(ids), "--requests", "1",
                     "--quiet"]) == 4
        assert "cannot reach 127.0.0.1:1" in capsys.readouterr().err

    def test_probe_request_id_reaches_the_server_logs(self, server: RunningServer,
                                                      caplog: pytest.LogCaptureFixture) -> None:
        """``probe --request-id`` sends x-request-id; the server's log line
        for the call carries it."""
        from service.cli.probe import Endpoint, suggest

        caplog.set_level(logging.INFO, logger="service")
        caplog.handler.addFilter(RequestIdLogFilter())
        suggest(Endpoint(server.target, request_id="probe-req-7"), 1, 5, "new_contacts", "", True, 5.0)
        lines = [r for r in caplog.records if r.getMessage() == "SuggestContacts"]
        assert lines and getattr(lines[-1], "fields", {}).get("request_id") == "probe-req-7"
