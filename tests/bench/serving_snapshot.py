"""The serving benchmark's synthetic snapshot, built once into a cache
directory under ``.data/bench/`` and reused across runs.

``python -m tests.bench.serving_snapshot --users N --edges M`` builds it on
its own (the serving bench calls ``ensure_snapshot`` itself)."""

from __future__ import annotations

import argparse
import gc
import logging
import time
from pathlib import Path

import numpy as np

from graph.ann import build_index
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.embedding import embed
from graph.errors import SnapshotError
from graph.fold import fold
from graph.snapshot import FORMAT_VERSION, read_manifest, write_snapshot
from graph.synthetic import NetworkSpec, generate_network

log = logging.getLogger(__name__)

CACHE = Path(".data/bench")
SEED = 11


def snapshot_dir(users: int, edges: int, cache: Path = CACHE) -> Path:
    """Where the snapshot of that size lives (the format version is in the
    name, so a format change builds a new one)."""
    return cache / f"serving-u{users}-e{edges}-s{SEED}-f{FORMAT_VERSION}" / "snapshot"


def ensure_snapshot(users: int, edges: int, cache: Path = CACHE) -> Path:
    """The cached snapshot directory, built first if missing or unreadable."""
    out = snapshot_dir(users, edges, cache)
    try:
        read_manifest(out)
        return out
    except SnapshotError:
        pass
    started = time.perf_counter()
    spec = NetworkSpec(n_users=users, avg_follows=edges / users, seed=SEED)
    print(f"building a {users:,}-user / ~{edges:,}-follow synthetic snapshot in {out} (once; cached)",
          flush=True)
    net = generate_network(spec)
    # No event ids: 20M Python strings cost gigabytes and the bench never
    # retries an event.
    table = net.to_event_table(event_ids=False)
    del net
    gc.collect()
    as_of = float(table.time.max(initial=0.0))
    store = fold(table, GraphConfig(), ManualClock(as_of))
    n_events = len(table)
    del table
    gc.collect()
    print(f"  folded {n_events:,} events in {time.perf_counter() - started:.0f}s", flush=True)
    vectors = embed(store)
    print(f"  embedded in {time.perf_counter() - started:.0f}s", flush=True)
    index = build_index(vectors)
    print(f"  indexed in {time.perf_counter() - started:.0f}s", flush=True)
    manifest = write_snapshot(store, vectors, index, out, extra={"sources": [f"synthetic {spec}"]})
    print(f"  wrote {manifest['snapshot_id']} ({manifest['counts']}) in "
          f"{time.perf_counter() - started:.0f}s", flush=True)
    return out


def sample_users(snapshot: Path, n: int, seed: int = 1) -> np.ndarray:
    """``n`` external user ids (int64) drawn uniformly from the snapshot."""
    ids = np.load(Path(snapshot) / "ids.ext.npy", mmap_mode="r")
    rng = np.random.default_rng(seed)
    return np.asarray(ids[rng.integers(0, ids.shape[0], n)], np.int64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=20_000_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(ensure_snapshot(args.users, args.edges))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
