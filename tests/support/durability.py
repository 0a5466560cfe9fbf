"""Helpers for the durability tests and benchmark: small synthetic
snapshots and event batches whose effect an oracle can predict exactly
(`contactgraph serve` as a real subprocess: tests/support/server.py)."""

from __future__ import annotations

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
