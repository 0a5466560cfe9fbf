"""The degree shape of the heavy-tailed synthetic network
(graph.synthetic_skewed) at a given size, and how long it takes to build.

    python -m tests.bench.skewed_shape --users 1000000 --edges 20000000

Prints the distinct follows, generation time (wall), max in- and
out-degree, median in- and out-degree, and the share of users whose
contacts' degrees sum past 300k (contacts: followed or followed-by,
counted once; a contact's degree is its number of contacts; the same
"reach" the suggestion bench picks its heavy viewers by).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from graph import arrays
from graph.synthetic_skewed import SkewedSpec, generate_skewed_follows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--edges", type=int, default=20_000_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    n = args.users
    t0 = time.perf_counter()
    src, dst = generate_skewed_follows(SkewedSpec(n_users=n, n_edges=args.edges, seed=args.seed))
    seconds = time.perf_counter() - t0
    ind = np.bincount(dst, minlength=n + 1)[1:]
    outd = np.bincount(src, minlength=n + 1)[1:]
    keys = arrays.unique(np.minimum(src, dst) * (n + 1) + np.maximum(src, dst))
    a, b = keys // (n + 1), keys % (n + 1)
    deg = np.bincount(a, minlength=n + 1) + np.bincount(b, minlength=n + 1)
    reach = (np.bincount(a, deg[b].astype(np.float64), n + 1) + np.bincount(b, deg[a].astype(np.float64), n + 1))[1:]
    print(f"users {n:,}  drawn {args.edges:,}  follows {src.shape[0]:,}  generation {seconds:.1f} s")
    print(f"max in {ind.max():,}  max out {outd.max():,}  median in {np.median(ind):.0f}  "
          f"median out {np.median(outd):.0f}  reach > 300k {np.mean(reach > 300_000):.2%}  "
          f"reach p99 {np.percentile(reach, 99):,.0f}")


if __name__ == "__main__":
    main()
