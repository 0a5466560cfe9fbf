"""Helpers for the durability tests and benchmark: small synthetic
snapshots, `contactgraph serve` as a real subprocess, and event batches
whose effect an oracle can predict exactly."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import graph_service_pb2
from graph.ann import build_index
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.embedding import EmbeddingConfig, embed
from graph.fold import fold
from graph.rebuild import read_inputs
from graph.snapshot import write_snapshot
from graph.synthetic import NetworkSpec, generate_network, write_demo_logs

REPO = Path(__file__).resolve().parents[2]
CONTACTGRAPH = Path(sys.executable).parent / "contactgraph"
SERVING = re.compile(r"contactgraph serving snapshot (\S+) on ([0-9.]+):(\d+)")
# Every test interaction happens at this second: with no time between
# them, a pair's strength is exactly the sum of its weights.
EVENT_TIME = 1_750_000_000


def build_snapshot(out: Path, *, n_users: int = 300, seed: int = 3, embedding_seed: int = 7) -> dict[str, Any]:
    """A snapshot of a seeded synthetic network at ``out`` (its logs beside
    it, in ``<out>-logs``); returns the manifest. Different
    ``embedding_seed``s give snapshots of the same events and watermark
    but different ids.

    The rebuild's steps (read, fold, embed, index, write) without training
    the ranker, which these tests do not need and which dominates a rebuild's
    time."""
    logs = write_demo_logs(generate_network(NetworkSpec(n_users=n_users, seed=seed)),
                           out.parent / f"{out.name}-logs")
    config = GraphConfig()
    table = read_inputs(logs, now=time.time(), max_future_s=config.max_future_s)
    store = fold(table, config, ManualClock(float(table.time.max(initial=0.0))))
    vectors = embed(store, EmbeddingConfig(seed=embedding_seed))
    return write_snapshot(store, vectors, build_index(vectors), out, extra={"sources": [str(p) for p in logs]})


def log_paths(snapshot: Path) -> list[Path]:
    """The event logs ``build_snapshot`` rebuilt ``snapshot`` from, in order."""
    logs = snapshot.parent / f"{snapshot.name}-logs"
    return [logs / "profiles.csv", logs / "events.csv.gz"]


def _stamp() -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=EVENT_TIME)


def follow(event_id: str, actor: int, target: int) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=event_id, event_time=_stamp(),
                            follow=ev_pb.Edge(actor_id=actor, target_id=target))


def message(event_id: str, actor: int, target: int) -> ev_pb.GraphEvent:
    """A MESSAGE interaction (weight 1.0) at EVENT_TIME."""
    return ev_pb.GraphEvent(event_id=event_id, event_time=_stamp(), interaction=ev_pb.Interaction(
        actor_id=actor, target_id=target, type=ev_pb.INTERACTION_TYPE_MESSAGE))


def request(events: Sequence[ev_pb.GraphEvent]) -> graph_service_pb2.ApplyEventsRequest:
    return graph_service_pb2.ApplyEventsRequest(events=list(events))


class ServerProcess:
    """`contactgraph serve` on a free port, as a child process; its stderr
    (JSON log lines) goes to ``log_path``."""

    def __init__(self, snapshot: Path, log_path: Path, *args: str) -> None:
        self.snapshot = snapshot
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.snapshot_id = ""

    def start(self, timeout_s: float = 30.0) -> "ServerProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(
                [str(CONTACTGRAPH), "serve", "--snapshot", str(self.snapshot), "--port", "0", "--workers", "8",
                 *self.args],
                stdout=subprocess.PIPE, stderr=err, cwd=REPO, env=env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                match = SERVING.search(line.decode())
                if match:
                    self.snapshot_id, self.port = match.group(1), int(match.group(3))
                    return self
            if self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"server did not start (exit {self.proc.returncode}, last line {line!r}); "
                           f"log tail:\n{self.log_tail()}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait()

    def stop(self) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""
