"""Issue 20's WAL damage against the real server: acknowledged batches,
kill -9, one byte XORed a third into the newest segment. The restart must
refuse, naming the segment and offset, and leave the bytes alone;
`contactgraph wal repair` then lets it start, serving every event but
those of the damaged record (which a client may send again)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import graph_service_pb2, graph_service_pb2_grpc
from graph.wal_format import FRAME_SIZE, HEADER_SIZE, list_segments
from tests.support import server as server_support
from tests.support.durability import build_snapshot, follow, request
from tests.support.server import REPO, ServerProcess

pytestmark = pytest.mark.integration

BATCHES = 300  # two segments of 65536 bytes
BATCH = 10


def _batch(k: int) -> list[ev_pb.GraphEvent]:
    """Follows between users only this test names, one pair per event."""
    return [follow(f"dmg-{k}-{i}", 6_000_000 + k, 6_100_000 + i) for i in range(BATCH)]


def _frame_starts(data: bytes) -> list[int]:
    starts, offset = [], HEADER_SIZE
    while offset < len(data):
        starts.append(offset)
        offset += FRAME_SIZE + int.from_bytes(data[offset: offset + 4], "little")
    return starts


def test_a_flipped_byte_stops_the_start_until_repaired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 after 300 acknowledged batches, XOR a byte a third into the
    newest segment: `serve` exits non-zero with SEGMENT:OFFSET on stderr and
    the file unchanged; `wal repair` sets it aside and reports the loss; the
    server then starts and serves every batch but the damaged one, which
    applies again when resent while the others are duplicates."""
    # The installed `contactgraph` script runs the checkout it was installed
    # from; `python -m service.cli` in REPO runs the code under test.
    command = tmp_path / "contactgraph"
    command.write_text(f'#!/bin/sh\ncd "{REPO}" && exec "{sys.executable}" -m service.cli "$@"\n')
    command.chmod(0o755)
    monkeypatch.setattr(server_support, "CONTACTGRAPH", command)
    data_dir = tmp_path / "data"
    snapshot = data_dir / "snapshot"
    build_snapshot(snapshot, n_users=100)
    log_path = tmp_path / "server.log"
    flags = ("--data-dir", str(data_dir), "--wal-segment-bytes", "65536")
    server = ServerProcess(snapshot, log_path, *flags).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = graph_service_pb2_grpc.GraphServiceStub(channel)
            for k in range(BATCHES):
                assert stub.ApplyEvents(request(_batch(k)), timeout=10).applied == BATCH
    finally:
        server.kill()

    segments = list_segments(data_dir / "wal")
    assert len(segments) >= 2
    newest = segments[-1].path
    original = newest.read_bytes()
    offset = len(original) // 3
    damaged = bytearray(original)
    damaged[offset] ^= 0x5A
    newest.write_bytes(bytes(damaged))
    starts = _frame_starts(original)
    index = max(i for i, s in enumerate(starts) if s <= offset)
    sealed_records = sum(len(_frame_starts(s.path.read_bytes())) for s in segments[:-1])
    lost = sealed_records + index  # one record per batch, in order

    refused = subprocess.run(
        [str(command), "serve", "--snapshot", str(snapshot), "--port", "0", *flags],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert f"{newest}:{starts[index]}: crc32 mismatch; intact records follow" in refused.stderr
    assert "wal repair" in refused.stderr
    assert newest.read_bytes() == bytes(damaged)

    repair = subprocess.run([str(command), "wal", "repair", "--data-dir", str(data_dir)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert repair.returncode == 0, repair.stderr
    assert f"lost: {newest.name} bytes {starts[index]}.." in repair.stdout
    assert f"{BATCH} event(s) known lost" in repair.stdout
    (aside,) = newest.parent.glob(f"{newest.name}.damaged-*")
    assert aside.read_bytes() == bytes(damaged)

    server = ServerProcess(snapshot, log_path, *flags).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = graph_service_pb2_grpc.GraphServiceStub(channel)
            for k in range(BATCHES):
                served = [stub.GetRelationship(graph_service_pb2.GetRelationshipRequest(
                    actor_id=e.follow.actor_id, target_id=e.follow.target_id), timeout=10).actor_follows_target
                    for e in _batch(k)]
                assert served == [k != lost] * BATCH, k
            for k in range(BATCHES):
                response = stub.ApplyEvents(request(_batch(k)), timeout=10)
                assert (response.applied, response.duplicates) == ((BATCH, 0) if k == lost else (0, BATCH)), k
    finally:
        assert server.stop() == 0
