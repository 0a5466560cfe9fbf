"""Memory of the event-id set (graph/event_ids.py) before and after each id
kept the 8-byte digest of its event's content (issue 20, item 4).

    python -m tests.bench.event_ids_bench                       # 1,000,000 users, 20,000,000 events
    python -m tests.bench.event_ids_bench --events 2000000      # quick check

Figures:

- the snapshot-loaded base: bytes per id of the sorted ``S<n>`` id array
  alone (before) and with the parallel uint64 digest array (after), for the
  synthetic logs' ids (``syn-<k>``) and for 36-character UUIDs;
- ids added live since the snapshot (Python objects until the next
  snapshot): tracemalloc bytes per id of a ``set[str]`` (before) and of
  the ``dict[str, int]`` of id -> digest (after), for ``--live`` ids;
- time to digest every event of the fold (numpy, whole columns) and to
  check one 100-event batch (``event_digests`` + ``split_batch``).

Not part of ``make test``; needs about 3 GB at the default size.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import time
import tracemalloc
import uuid

import numpy as np

from graph.errors import EventIdConflict
from graph.event_ids import EventIdSet, content_digests, event_digests, split_batch
from graph.model import Event, EventKind


def _syn_ids(n: int) -> np.ndarray:
    """``syn-1`` .. ``syn-<n>`` as the synthetic logs name them, sorted,
    ``S<longest>`` as a snapshot stores them."""
    ids = np.strings.add(np.bytes_(b"syn-"), np.arange(1, n + 1).astype("S20"))
    ids = ids.astype(f"S{4 + len(str(n))}")
    ids.sort()
    return ids


def _uuid_ids(n: int) -> np.ndarray:
    ids = np.array([str(uuid.UUID(int=k)).encode() for k in np.random.default_rng(1).integers(
        0, 2**62, n).tolist()], "S36")
    ids.sort()
    return ids


def _digests(n: int, users: int) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(2)
    kind = rng.integers(1, 10, n).astype(np.uint8)
    actor = rng.integers(1, users + 1, n)
    target = rng.integers(1, users + 1, n)
    detail = rng.integers(0, 6, n).astype(np.int16)
    start = time.perf_counter()
    digests = content_digests(kind, actor, target, detail)
    return digests, time.perf_counter() - start


def _live_bytes(n: int, *, with_digests: bool) -> float:
    ids = [f"live-{uuid.UUID(int=k)}" for k in range(n)]
    digests = np.random.default_rng(3).integers(1, 2**63, n).tolist()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    # The strings are shared with the request that carried them in both
    # layouts; count the container (and the digest ints) only.
    held: object = dict(zip(ids, digests, strict=True)) if with_digests else set(ids)
    after = tracemalloc.get_traced_memory()[0]
    if with_digests:
        # The digests are ints made by tolist() above: count them as held.
        after += sum(d.__sizeof__() for d in digests)
    tracemalloc.stop()
    del held
    return (after - before) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--live", type=int, default=1_000_000, help="ids added live since the snapshot")
    parser.add_argument("--uuid-events", type=int, default=None,
                        help="events for the UUID row (default: --events)")
    args = parser.parse_args()
    n = args.events

    digests, digest_s = _digests(n, args.users)
    rows = []
    for name, ids in (("syn-<k>", _syn_ids(n)), ("uuid", _uuid_ids(args.uuid_events or n))):
        count = ids.shape[0]
        before = ids.nbytes / count
        after = (ids.nbytes + digests[:count].nbytes) / count
        rows.append((f"base, {name} ids (S{ids.dtype.itemsize})", count, before, after))
        if name == "syn-<k>":
            seen = EventIdSet(ids, digests.copy())
            batch = [Event(f"syn-{k}", 0.0, EventKind.FOLLOW, k, k + 1) for k in range(1, 101)]
            batch += [Event(f"new-{k}", 0.0, EventKind.FOLLOW, k, k + 1) for k in range(100)]
            runs = []
            for _ in range(50):
                start = time.perf_counter()
                # Random digests: a known id may well "conflict"; either way
                # the whole check ran.
                with contextlib.suppress(EventIdConflict):
                    split_batch(seen, [e.event_id for e in batch], event_digests(batch))
                runs.append(time.perf_counter() - start)
            check_us = float(np.median(runs)) * 1e6
        del ids
        gc.collect()
    live_before = _live_bytes(args.live, with_digests=False)
    live_after = _live_bytes(args.live, with_digests=True)
    rows.append((f"live additions ({args.live:,} ids)", args.live, live_before, live_after))

    print(f"event-id memory at {args.users:,} users / {n:,} events")
    print(f"{'layer':<40} {'ids':>12} {'before B/id':>12} {'after B/id':>11} {'after MB':>10}")
    for label, count, before, after in rows:
        print(f"{label:<40} {count:>12,} {before:>12.1f} {after:>11.1f} {after * count / 1e6:>10.1f}")
    print(f"digest of {n:,} fold rows: {digest_s:.2f} s; check of a 200-event batch (100 known ids): "
          f"{check_us:.0f} us median")


if __name__ == "__main__":
    main()
