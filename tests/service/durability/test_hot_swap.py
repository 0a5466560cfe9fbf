"""Snapshots swapped into a running server (a real subprocess): under load
with no failed call, with the WAL replayed on top, refused when corrupt,
truncated, of an older format or older than the log reaches back, and
picked up from a watched directory."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from contactgraph.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    graph_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)
from contactgraph.v1 import graph_events_pb2 as ev_pb
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.snapshot import read_snapshot, write_snapshot
from graph.wal_format import list_segments
from service.durability.wal_replay import replay
from tests.support.durability import build_snapshot, follow, message, request
from tests.support.grpc_errors import error_reason
from tests.support.server import CONTACTGRAPH, REPO, ServerProcess

pytestmark = pytest.mark.integration

N_USERS = 300


class Snapshots:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.a = root / "a"
        self.b = root / "b"
        self.manifest_a = build_snapshot(self.a, n_users=N_USERS, embedding_seed=7)
        self.manifest_b = build_snapshot(self.b, n_users=N_USERS, embedding_seed=8)
        assert self.manifest_a["snapshot_id"] != self.manifest_b["snapshot_id"]
        assert self.manifest_a["watermark"] == self.manifest_b["watermark"]
        self.bad = {
            "bit flip": self._variant("bitflip", _flip_bit),
            "truncated file": self._variant("truncated", _truncate),
            "older format": self._variant("v1", lambda d: _edit_manifest(d, format_version=1)),
            "other graph config": self._variant("halflife", lambda d: _edit_manifest(
                d, graph_config={**self.manifest_a["graph_config"], "half_life_s": 3600.0})),
        }

    def _variant(self, name: str, damage: Callable[[Path], None]) -> Path:
        path = self.root / name
        shutil.copytree(self.a, path)
        damage(path)
        return path


def _flip_bit(directory: Path) -> None:
    path = directory / "follows.out.indices.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(directory: Path) -> None:
    path = directory / "embeddings.npy"
    os.truncate(path, path.stat().st_size // 2)


def _edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> Snapshots:
    return Snapshots(tmp_path_factory.mktemp("snapshots"))


Serve = Callable[..., ServerProcess]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """``serve(snapshot, *args)``: a server subprocess with its own WAL
    directory, stopped when the test ends."""
    started: list[ServerProcess] = []

    def start(snapshot: Path, *args: str) -> ServerProcess:
        wal = ("--wal-dir", str(tmp_path / "wal")) if "--wal-dir" not in args else ()
        server = ServerProcess(snapshot, tmp_path / "server.log", *wal, *args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _load(target: str, path: str | Path) -> admin_service_pb2.LoadSnapshotResponse:
    with grpc.insecure_channel(target) as channel:
        response: admin_service_pb2.LoadSnapshotResponse = admin_service_pb2_grpc.AdminServiceStub(
            channel).LoadSnapshot(admin_service_pb2.LoadSnapshotRequest(path=str(path)), timeout=60)
        return response


def _refusal(target: str, path: str | Path) -> tuple[grpc.StatusCode, str, str]:
    """(code, message, ErrorInfo reason) of a LoadSnapshot that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        _load(target, path)
    err = info.value
    return err.code(), err.details(), error_reason(err)


def _served_snapshot(target: str) -> str:
    with grpc.insecure_channel(target) as channel:
        stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
        snapshot_id: str = stub.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=1),
                                                timeout=10).snapshot_id
        return snapshot_id


def _apply(target: str, events: list[ev_pb.GraphEvent]) -> tuple[int, int, int]:
    with grpc.insecure_channel(target) as channel:
        r = graph_service_pb2_grpc.GraphServiceStub(channel).ApplyEvents(request(events), timeout=10)
        return r.applied, r.duplicates, r.watermark


def _events(prefix: str, n: int, seed: int) -> list[ev_pb.GraphEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.sample(range(1, N_USERS + 1), 2)
        out.append(follow(f"{prefix}-{i}", a, b) if i % 3 == 0 else message(f"{prefix}-{i}", a, b))
    return out


class TestHotSwap:
    def test_swaps_under_load_fail_no_call(self, snapshots: Snapshots, serve: Serve) -> None:
        """Two clients hammer SuggestContacts and a writer keeps applying
        events while the snapshot is swapped twelve times: not one call
        fails, both snapshots are served, and after the swaps every
        acknowledged event is there once (the WAL replayed onto each new
        snapshot)."""
        server = serve(snapshots.a)
        base = snapshots.manifest_a["watermark"]
        stop = threading.Event()
        failures: list[str] = []
        seen_ids: set[str] = set()
        suggest_calls = [0]
        applied = [0]

        def hammer(seed: int) -> None:
            rng = random.Random(seed)
            with grpc.insecure_channel(server.target) as channel:
                stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
                while not stop.is_set():
                    try:
                        r = stub.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(
                            user_id=rng.randint(1, N_USERS), page_size=10), timeout=10)
                        seen_ids.add(r.snapshot_id)
                        suggest_calls[0] += 1
                    except grpc.RpcError as err:
                        failures.append(f"SuggestContacts: {err.code()} {err.details()}")

        def writer() -> None:
            k = 0
            with grpc.insecure_channel(server.target) as channel:
                stub = graph_service_pb2_grpc.GraphServiceStub(channel)
                while not stop.is_set():
                    try:
                        r = stub.ApplyEvents(request(_events(f"load-{k}", 20, k)), timeout=10)
                        applied[0] += r.applied
                    except grpc.RpcError as err:
                        failures.append(f"ApplyEvents: {err.code()} {err.details()}")
                    k += 1
                    time.sleep(0.005)

        threads = [threading.Thread(target=hammer, args=(s,)) for s in (1, 2)] + [threading.Thread(target=writer)]
        for t in threads:
            t.start()
        swapped = []
        try:
            for i in range(12):
                target = snapshots.b if i % 2 == 0 else snapshots.a
                response = _load(server.target, target)
                swapped.append(response.snapshot_id)
                assert response.watermark >= base
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert failures == []
        ids = (snapshots.manifest_a["snapshot_id"], snapshots.manifest_b["snapshot_id"])
        assert swapped == [ids[1], ids[0]] * 6
        assert seen_ids == set(ids)
        assert suggest_calls[0] > 20 and applied[0] > 0
        final = _load(server.target, snapshots.b)
        assert (final.watermark, final.replayed) == (base + applied[0], applied[0])

    def test_swap_replays_the_log_and_remembers_ids(self, snapshots: Snapshots, serve: Serve) -> None:
        """Events applied before a swap are replayed onto the new snapshot
        (same watermark), and retrying them afterwards changes nothing."""
        server = serve(snapshots.a)
        events = _events("replay", 30, 3)
        applied, _, watermark = _apply(server.target, events)
        assert applied == 30
        response = _load(server.target, snapshots.b)
        assert (response.snapshot_id, response.watermark, response.replayed) == (
            snapshots.manifest_b["snapshot_id"], watermark, 30)
        assert _apply(server.target, events) == (0, 30, watermark)

    def test_bad_snapshots_are_refused_and_the_current_one_keeps_serving(self, snapshots: Snapshots,
                                                                         serve: Serve) -> None:
        """A bit flip, a truncated file, an older format, another graph
        config or no snapshot at all: each refused with FAILED_PRECONDITION
        and a message saying why, and the same snapshot serves on."""
        server = serve(snapshots.a)
        current = snapshots.manifest_a["snapshot_id"]
        expected = {
            "bit flip": "does not match its checksum (corrupt)",
            "truncated file": "does not match its checksum (corrupt)",
            "older format": "snapshot format 1, this build reads",
            "other graph config": "built with graph config",
        }
        for kind, path in snapshots.bad.items():
            code, text, reason = _refusal(server.target, path)
            assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SNAPSHOT_REFUSED"), kind
            assert expected[kind] in text and "keeps serving" in text, (kind, text)
            assert _served_snapshot(server.target) == current
        code, text, _ = _refusal(server.target, snapshots.root / "missing")
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "not a snapshot directory" in text
        code, text, _ = _refusal(server.target, "")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and text.startswith("path:")
        assert _served_snapshot(server.target) == current

    def test_start_up_refuses_a_corrupt_or_older_snapshot(self, snapshots: Snapshots, tmp_path: Path) -> None:
        """`contactgraph serve` on a corrupt or older-format snapshot exits
        1 and says why, instead of serving it."""
        for kind, words in (("bit flip", "corrupt"), ("older format", "snapshot format 1")):
            result = subprocess.run(
                [str(CONTACTGRAPH), "serve", "--snapshot", str(snapshots.bad[kind]), "--port", "0",
                 "--wal-dir", str(tmp_path / "wal")], capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
            assert result.returncode == 1, kind
            assert words in result.stderr, (kind, result.stderr)

    def test_a_snapshot_older_than_the_compacted_log_is_refused(self, snapshots: Snapshots, tmp_path: Path,
                                                               serve: Serve) -> None:
        """After `wal compact` against a newer snapshot, the old snapshot
        can no longer be caught up: LoadSnapshot refuses it (WAL_GAP) and
        the newer one, replayed on, keeps serving."""
        wal_dir = tmp_path / "wal"
        server = serve(snapshots.a, "--wal-segment-bytes", "4096")
        for k in range(10):
            assert _apply(server.target, _events(f"gap-{k}", 30, 100 + k))[0] == 30
        assert server.stop() == 0
        # A newer snapshot: A plus the whole log.
        assert len(list_segments(wal_dir)) > 1
        live = read_snapshot(snapshots.a, GraphConfig(), ManualClock(0.0))
        replay(wal_dir, live.store)
        newer = tmp_path / "newer"
        manifest = write_snapshot(live.store, np.asarray(live.vectors), live.index, newer)
        result = subprocess.run([str(CONTACTGRAPH), "wal", "compact", "--wal-dir", str(wal_dir),
                                 "--snapshot", str(newer)], capture_output=True, text=True, cwd=REPO, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert len(list_segments(wal_dir)) == 1
        server = serve(newer)
        # Beside the served snapshot: LoadSnapshot reads nothing outside its
        # directory.
        older = tmp_path / "older"
        shutil.copytree(snapshots.a, older)
        code, text, reason = _refusal(server.target, older)
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WAL_GAP"), text
        assert _served_snapshot(server.target) == manifest["snapshot_id"]
        assert _apply(server.target, _events("gap-0", 30, 100))[1] == 30

    def test_a_snapshot_renamed_into_the_watched_directory_is_swapped_in(
            self, snapshots: Snapshots, tmp_path: Path, serve: Serve) -> None:
        """With --watch-interval, a new snapshot renamed into the served
        directory (as rebuild does) is swapped in without a call."""
        live = tmp_path / "live"
        shutil.copytree(snapshots.a, live)
        server = serve(live, "--watch-interval", "0.1")
        staged = tmp_path / ".live.tmp"
        shutil.copytree(snapshots.b, staged)
        os.rename(live, tmp_path / ".live.old")
        os.rename(staged, live)
        deadline = time.monotonic() + 15
        while _served_snapshot(server.target) != snapshots.manifest_b["snapshot_id"]:
            assert time.monotonic() < deadline, "the watched snapshot was not swapped in"
            time.sleep(0.1)
