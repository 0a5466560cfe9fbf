"""kill -9 at a random moment loses nothing that was acknowledged, and a
retried batch never counts twice.

The server runs as a real subprocess over a real WAL directory (small
segments, so crashes also land around rotations). Client threads send
batches of follows and MESSAGE interactions with unique event ids, all at
one event time, so the oracle for a pair's strength is exactly its number
of messages."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import graph_service_pb2_grpc
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.snapshot import read_snapshot
from graph.wal_format import list_segments
from service.durability.wal import WriteAheadLog
from service.durability.wal_replay import replay
from service.server.config import WalConfig
from tests.support.durability import EVENT_TIME, build_snapshot, follow, message, request
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

ROUNDS = 20
THREADS = 4
BATCH = 10
MAX_BATCHES_PER_THREAD = 40
# Users the snapshot does not know: only this test's events touch them.
USERS = list(range(5_000_001, 5_000_031))


class Driver:
    """Makes batches, remembers which were acknowledged and which are
    pending (sent, answer not received)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.next_batch = 0
        self.batches: dict[int, list[ev_pb.GraphEvent]] = {}
        self.acked: set[int] = set()
        self.pending: list[int] = []

    def new_batch(self) -> int:
        with self.lock:
            k = self.next_batch
            self.next_batch += 1
            events = []
            for i in range(BATCH):
                a, b = self.rng.sample(USERS, 2)
                eid = f"crash-{k}-{i}"
                events.append(follow(eid, a, b) if self.rng.random() < 0.3 else message(eid, a, b))
            self.batches[k] = events
            return k

    def send(self, stub: graph_service_pb2_grpc.GraphServiceStub, k: int) -> bool:
        """True if the server answered; an answer must be all applied or
        all duplicates (a batch is one WAL record: all or nothing)."""
        try:
            response = stub.ApplyEvents(request(self.batches[k]), timeout=10)
        except grpc.RpcError:
            with self.lock:
                self.pending.append(k)
            return False
        assert (response.applied, response.duplicates) in ((BATCH, 0), (0, BATCH)), (k, response)
        with self.lock:
            self.acked.add(k)
        return True


def _client(driver: Driver, target: str, stop: threading.Event) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = graph_service_pb2_grpc.GraphServiceStub(channel)
        for _ in range(MAX_BATCHES_PER_THREAD):
            if stop.is_set() or not driver.send(stub, driver.new_batch()):
                return


def _resend_pending(driver: Driver, target: str) -> None:
    with driver.lock:
        pending, driver.pending = driver.pending, []
    with grpc.insecure_channel(target) as channel:
        stub = graph_service_pb2_grpc.GraphServiceStub(channel)
        for k in pending:
            assert driver.send(stub, k), f"resend of batch {k} failed"


def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    """Twenty rounds of: start the server, resend what got no answer, drive
    concurrent ApplyEvents, SIGKILL at a random moment (some rounds also
    leave a torn frame behind, as a crash mid-write would). Finally every
    acknowledged event is in the graph, every follow edge is there, and
    every pair's strength equals the oracle's count: nothing lost, nothing
    counted twice."""
    started = time.monotonic()
    snapshot = tmp_path / "snapshot"
    manifest = build_snapshot(snapshot, n_users=200)
    wal_dir = tmp_path / "wal"
    log_path = tmp_path / "server.log"
    driver = Driver(seed=20240601)
    rng = random.Random(7)
    torn_rounds = 0
    for round_no in range(ROUNDS):
        server = ServerProcess(snapshot, log_path, "--wal-dir", str(wal_dir), "--wal-segment-bytes", "16384")
        server.start()
        try:
            _resend_pending(driver, server.target)
            stop = threading.Event()
            threads = [threading.Thread(target=_client, args=(driver, server.target, stop)) for _ in range(THREADS)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.0, 0.5))
        finally:
            server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive()
        if round_no % 4 == 3 and list_segments(wal_dir):
            # A frame cut short by the crash: the next start must cut it off.
            with open(list_segments(wal_dir)[-1].path, "ab") as f:
                f.write(bytes([0x40, 0x01, 0, 0]) + rng.randbytes(rng.randrange(1, 60)))
            torn_rounds += 1

    server = ServerProcess(snapshot, log_path, "--wal-dir", str(wal_dir)).start()
    try:
        _resend_pending(driver, server.target)
    finally:
        assert server.stop() == 0
    assert not driver.pending
    assert len(driver.acked) == driver.next_batch > ROUNDS
    assert log_path.read_text().count("of torn tail") >= torn_rounds

    # The graph a restart would serve: the snapshot plus the log.
    WriteAheadLog.open(WalConfig(wal_dir)).close()
    store = read_snapshot(snapshot, GraphConfig(), ManualClock(EVENT_TIME)).store
    replay(wal_dir, store)
    events = [e for k in sorted(driver.acked) for e in driver.batches[k]]
    assert store.watermark == manifest["watermark"] + len(events)
    assert all(e.event_id in store.seen_ids for e in events)
    strengths: Counter[tuple[int, int]] = Counter()
    for e in events:
        if e.WhichOneof("kind") == "follow":
            a, b = store.row(e.follow.actor_id), store.row(e.follow.target_id)
            assert store.follows.contains(a, b), e.event_id
        else:
            strengths[(e.interaction.actor_id, e.interaction.target_id)] += 1
    for (actor, target), count in strengths.items():
        assert store.strength(store.row(actor), store.row(target), now=EVENT_TIME) == count, (actor, target)
    assert time.monotonic() - started < 120
