"""Work per suggestion with and without the caps (graph.bounds), on the
bench network and on the heavy-tailed one.

    python -m tests.bench.suggest_bench --users 200000 --edges 4000000 --calls 300

For each network: a store of the follows (friends = mutual follows), the
contact graph of those follows, random unit vectors in an exact/IVF index;
then, per sampled viewer (uniform over users with a follow, plus the 1%
with the largest sum of neighbours' degrees), the NEW_CONTACTS flow's
sources, merge, pre-rank filters and pre-rank, and the linear ranker:
CPU time per call (``time.process_time``), p50 / p99, and the candidates
handed to the ranker (the learned ranker's cost is linear in them). Safety
and transforms are left out (they run on the ranked head only) and so is
the learned ranker (no model here): this is the part the caps bound.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from graph.ann import VectorSearch, build_index
from graph.bounds import Bounds
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.contacts import ContactGraph
from graph.csr import CSR
from graph.ids import IdMap
from graph.model import Surface
from graph.pairlog import PairLog
from graph.profiles import ProfileTable
from graph.relations import EdgeSet, WeightedEdges
from graph.retrieval import RetrievalConfig
from graph.store import EDGE_SETS, PAIR_LOGS, GraphStore
from graph.synthetic import NetworkSpec, generate_follows
from graph.synthetic_skewed import SkewedSpec, generate_skewed_follows
from graph.table import EventTable
from service.pipeline import Pipeline


def _store(src: np.ndarray, dst: np.ndarray, n: int) -> GraphStore:
    """Follows (rows = id - 1) and friends = the mutual ones."""
    lock = threading.RLock()
    sets = {name: EdgeSet(CSR.empty(n), CSR.empty(n) if name != "friends" else None, lock,
                          with_in=name != "friends") for name in EDGE_SETS}
    a, b = src - 1, dst - 1
    sets["follows"] = EdgeSet.build(a, b, n, lock, with_in=True)
    keys = a * n + b
    mutual = np.isin(keys, b * n + a)
    sets["friends"] = EdgeSet.build(a[mutual], b[mutual], n, lock, with_in=False)
    interactions = WeightedEdges(CSR.empty(n, {"strength": np.float32, "time": np.uint32}), CSR.empty(n), lock,
                                 GraphConfig().half_life_s)
    return GraphStore(GraphConfig(), ManualClock(0.0), IdMap(np.arange(1, n + 1, dtype=np.int64)),
                      ProfileTable(n_rows=n), sets, interactions, {name: PairLog() for name in PAIR_LOGS}, lock)


def _viewers(contacts: ContactGraph, calls: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(contacts.degree > 0)
    reach = np.bincount(np.repeat(np.arange(contacts.n_rows), contacts.degree),
                        contacts.degree[contacts.indices].astype(np.float64), contacts.n_rows)
    top = np.argsort(-reach)[: max(1, contacts.n_rows // 100)]
    return np.concatenate([rng.choice(active, calls - calls // 10), rng.choice(top, calls // 10)])


def _measure(pipeline: Pipeline, viewers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flow = pipeline.flow(Surface.NEW_CONTACTS)
    cpu = np.zeros(viewers.shape[0])
    pool = np.zeros(viewers.shape[0])
    for i, row in enumerate(viewers.tolist()):
        t0 = time.process_time()
        results = flow.gather(row, 0.0)
        candidates, _ = flow.shortlist_for_ranker(row, results)
        flow.ranker.rank_scores(row, candidates, Surface.NEW_CONTACTS, 0.0)
        cpu[i] = time.process_time() - t0
        pool[i] = len(candidates)
    return cpu, pool


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--edges", type=int, default=4_000_000)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    n = args.users
    networks = {
        "bench": generate_follows(NetworkSpec(n_users=n, avg_follows=args.edges / n, seed=args.seed)),
        "heavy-tailed": generate_skewed_follows(SkewedSpec(n_users=n, n_edges=args.edges, seed=args.seed)),
    }
    print(f"{'network':<13} {'caps':<5} {'p50 ms':>8} {'p99 ms':>8} {'pool p50':>9} {'pool max':>9}")
    for name, (src, dst) in networks.items():
        store = _store(src, dst, n)
        contacts = ContactGraph.build(EventTable.empty(), store, 0.0)
        vectors = np.random.default_rng(args.seed).standard_normal((n, 32)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        search = VectorSearch(vectors, build_index(vectors))
        viewers = _viewers(contacts, args.calls, args.seed)
        indeg = np.bincount(dst, minlength=n + 1)
        outdeg = np.bincount(src, minlength=n + 1)
        print(f"# {name}: {n} users, {src.shape[0]} follows, max in {indeg.max()}, max out {outdeg.max()}, "
              f"median in {np.median(indeg[1:]):.0f}")
        rows = {}
        for label, bounds in (("off", Bounds.off()), ("on", Bounds(pre_rank_keep=300))):
            pipeline = Pipeline(store, search, contacts=contacts.with_bounds(bounds),
                                retrieval=RetrievalConfig(bounds=bounds))
            _measure(pipeline, viewers[:10])  # warm-up (the hub lists are built once)
            cpu, pool = _measure(pipeline, viewers)
            rows[label] = np.percentile(cpu, [50, 99]) * 1e3
            print(f"{name:<13} {label:<5} {rows[label][0]:>8.2f} {rows[label][1]:>8.2f} "
                  f"{np.median(pool):>9.0f} {pool.max():>9.0f}")
        ratio = rows["off"] / rows["on"]
        print(f"{name:<13} {'off/on':<5} {ratio[0]:>7.1f}x {ratio[1]:>7.1f}x")


if __name__ == "__main__":
    main()
