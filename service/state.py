"""What the server serves: the loaded snapshot, the live store on top of it
and the pipeline over both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from graph.ann import VectorSearch
from graph.clock import Clock
from graph.config import GraphConfig
from graph.snapshot import Snapshot, read_snapshot
from graph.store import GraphStore

from .pipeline import Pipeline
from .safety.engine import SafetyEngine


@dataclass
class ServingState:
    snapshot: Snapshot
    pipeline: Pipeline

    @property
    def store(self) -> GraphStore:
        return self.snapshot.store

    @property
    def snapshot_id(self) -> str:
        return self.snapshot.snapshot_id

    @staticmethod
    def load(directory: Path, config: GraphConfig, clock: Clock,
             safety: SafetyEngine | None = None) -> "ServingState":
        """``safety`` outlives snapshots (policy, guardians, impressions):
        the server passes its own so a swap keeps them."""
        snapshot = read_snapshot(directory, config, clock)
        search = VectorSearch(snapshot.vectors, snapshot.index)
        return ServingState(snapshot, Pipeline(snapshot.store, search, safety=safety))

    @property
    def safety(self) -> SafetyEngine:
        return self.pipeline.safety
