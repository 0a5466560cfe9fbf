"""The offline rebuild job: event logs in, a snapshot directory out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ann import build_index
from .clock import Clock, ManualClock, SystemClock
from .config import GraphConfig
from .embedding import EmbeddingConfig, embed
from .eventlog import read_event_files
from .fold import fold
from .snapshot import write_snapshot

log = logging.getLogger(__name__)


@dataclass
class RebuildReport:
    manifest: dict[str, Any]
    events: int
    timings: dict[str, float] = field(default_factory=dict)


def rebuild(paths: list[Path], out_dir: Path, *, config: GraphConfig | None = None,
            embedding: EmbeddingConfig | None = None, clock: Clock | None = None) -> RebuildReport:
    """Read the logs in order, fold them, embed, index and write the
    snapshot. Any bad line raises EventLogError before anything is written."""
    config = config or GraphConfig()
    clock = clock or SystemClock()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    table = read_event_files(paths, now=clock.now(), max_future_s=config.max_future_s)
    timings["read"] = time.perf_counter() - started
    t = time.perf_counter()
    # Decay and windows are computed "as of" the newest event in the logs.
    store = fold(table, config, ManualClock(float(table.time.max(initial=0.0))))
    timings["fold"] = time.perf_counter() - t
    t = time.perf_counter()
    vectors = embed(store, embedding)
    timings["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    index = build_index(vectors)
    timings["index"] = time.perf_counter() - t
    t = time.perf_counter()
    manifest = write_snapshot(store, vectors, index, out_dir, extra={
        "sources": [str(p) for p in paths],
        "embedding_config": (embedding or EmbeddingConfig()).__dict__,
    })
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    log.info("rebuilt %s from %d events in %.1fs", manifest["snapshot_id"], len(table), timings["total"])
    return RebuildReport(manifest, len(table), timings)
