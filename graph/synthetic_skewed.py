"""A heavy-tailed synthetic follower network: the "celebrities and mass
followers" shape the bench's second network needs (issue 15).

Every user gets an out-degree target (activity) and an in-degree target
(popularity), independently drawn: Pareto with tail exponent ``alpha``
(≈ 1.8: P(w > x) ~ x^-alpha), scaled so the targets sum to ``n_edges``
(median ≈ 14 at 20 follows a user). A Pareto sample of 1M users tops out
near 20k, well short of a social graph's celebrities, so the top
``hub_rank_fraction`` of ranks get a steeper power-law boost that ends at
``max_out_fraction`` / ``max_in_fraction`` of the users (190k out / 110k
in at 1M users); the rest are rescaled so the total stays ``n_edges``.

Hubs (target >= ``hub_min_degree``) get their follows by sampling without
replacement: a mass follower follows a uniform random subset of the users
of exactly its target size, a celebrity is followed by one. Drawing them
Chung–Lu style (with replacement) is what kept the hubs small before:
repeats of the same pair were dropped, and a hub's draws repeat a lot.
Everyone else follows Chung–Lu: source in proportion to activity, target
in proportion to popularity among non-hubs, inside the source's community
with probability ``community_affinity`` (communities hold
``community_size`` users; hubs are global, in no community's local draws).
Self-follows and repeats are dropped, so there are a few percent fewer
distinct follows than ``n_edges``.

Measured sizes in docs/performance.md; small-size checks in
tests/graph/test_synthetic_skewed.py. Deterministic by seed; vectorised
numpy apart from one sampling call per hub. Returns external ids
``1..n_users`` (int64) like ``graph.synthetic.generate_follows``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import arrays

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SkewedSpec:
    n_users: int = 1_000_000
    n_edges: int = 20_000_000  # follows drawn (before repeats are dropped)
    alpha: float = 1.8
    community_size: int = 500
    community_affinity: float = 0.7
    max_out_fraction: float = 0.19  # the top out-degree, as a share of the users
    max_in_fraction: float = 0.11  # the top in-degree, as a share of the users
    hub_rank_fraction: float = 0.001  # ranks whose targets get the hub boost
    hub_min_degree: int = 200  # targets from here up are sampled without replacement
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_users < 2 or self.n_edges < 1:
            raise ValueError(f"need n_users >= 2 and n_edges >= 1, got {self.n_users}, {self.n_edges}")
        if not 1.0 < self.alpha < 3.0:
            raise ValueError(f"alpha must be in (1, 3), got {self.alpha}")
        if not 0.0 <= self.community_affinity <= 1.0:
            raise ValueError("community_affinity must be in [0, 1]")
        for name in ("max_out_fraction", "max_in_fraction", "hub_rank_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.hub_min_degree < 1:
            raise ValueError(f"hub_min_degree must be >= 1, got {self.hub_min_degree}")


def _targets(rng: np.random.Generator, spec: SkewedSpec, max_fraction: float) -> I64:
    """Degree targets per user (int64, shape (n,)) summing to about
    ``n_edges``: Pareto body, top ranks boosted to ``max_fraction * n``."""
    n, m = spec.n_users, spec.n_edges
    w = (1.0 - rng.random(n)) ** (-1.0 / spec.alpha)
    w *= m / w.sum()
    order = np.argsort(-w, kind="stable")
    top = min(n - 1, max(2, int(np.ceil(spec.hub_rank_fraction * n))))
    d_max = min(max_fraction * n, n - 1.0)
    head = w[order[:top]]
    # Multiply rank r's weight by (top / r)^gamma: 1 at the edge of the
    # boosted ranks, d_max / head[0] at rank 1, a straight line on a
    # log-log rank plot in between (a heavier power-law tail; a lighter
    # one in the rare sample whose maximum already passes d_max).
    gamma = np.log(d_max / head[0]) / np.log(top)
    w[order[:top]] = np.minimum(head * (top / np.arange(1, top + 1)) ** gamma, d_max)
    rest = order[top:]
    w[rest] *= max(m - w[order[:top]].sum(), float(n - top)) / w[rest].sum()
    # Round stochastically so the body keeps its mean, at least one each.
    t = np.floor(w + rng.random(n)).astype(np.int64)
    return np.clip(t, 1, n - 1)


def _pick(rng: np.random.Generator, cum: F64, lo: I64, hi: I64) -> I64:
    """One index per (lo, hi) block, in proportion to the weights whose
    cumulative sums ``cum`` (with a leading 0) are given; zero-weight
    indices are never picked from a block with positive weight."""
    u = cum[lo] + rng.random(lo.shape[0]) * (cum[hi] - cum[lo])
    picked: I64 = np.minimum(np.searchsorted(cum, u, side="right") - 1, hi - 1).astype(np.int64)
    return np.maximum(picked, lo)


def _hub_edges(rng: np.random.Generator, hubs: I64, sizes: I64, n: int) -> tuple[I64, I64]:
    """(hub, other) per edge: for each hub, ``size`` distinct other users
    drawn uniformly without replacement (never the hub itself)."""
    if hubs.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    others = []
    for hub, size in zip(hubs.tolist(), sizes.tolist(), strict=True):
        o = rng.choice(n - 1, size=min(size, n - 1), replace=False).astype(np.int64)
        others.append(o + (o >= hub))  # skip the hub's own index
    return np.repeat(hubs, np.minimum(sizes, n - 1)), np.concatenate(others)


def generate_skewed_follows(spec: SkewedSpec) -> tuple[I64, I64]:
    """(follower ids, followed ids), int64 external ids 1..n_users, distinct
    pairs sorted by (follower, followed), no self-follows."""
    rng = np.random.default_rng(spec.seed)
    n = spec.n_users
    out_t = _targets(rng, spec, spec.max_out_fraction)
    in_t = _targets(rng, spec, spec.max_in_fraction)
    out_hub = out_t >= spec.hub_min_degree
    in_hub = in_t >= spec.hub_min_degree
    hs, hd = _hub_edges(rng, np.flatnonzero(out_hub).astype(np.int64), out_t[out_hub], n)
    cd, cs = _hub_edges(rng, np.flatnonzero(in_hub).astype(np.int64), in_t[in_hub], n)
    # The hubs' samples land on ordinary users too (a celebrity's
    # followers are ordinary users' follows): the Chung-Lu draws get what
    # is left of ``n_edges``.
    m = max(0, spec.n_edges - hs.shape[0] - cs.shape[0])
    activity = np.where(out_hub, 0.0, out_t.astype(np.float64))
    popularity = np.where(in_hub, 0.0, in_t.astype(np.float64))
    # Communities are contiguous row blocks; the ids are shuffled after, so
    # ids say nothing about communities or weights.
    size = max(1, spec.community_size)
    c_lo = np.arange(n, dtype=np.int64) // size * size
    c_hi = np.minimum(c_lo + size, n)
    act_cum = np.concatenate([[0.0], np.cumsum(activity)])
    pop_cum = np.concatenate([[0.0], np.cumsum(popularity)])
    src = _pick(rng, act_cum, np.zeros(m, np.int64), np.full(m, n, np.int64))
    # A community holds ``community_size`` users: a user with many follows
    # cannot keep most of them inside it (they would collapse as repeats),
    # so the local share shrinks once the target passes the size.
    p_local = spec.community_affinity * np.minimum(1.0, size / (4.0 * np.maximum(out_t, 1.0)))
    # A community whose users are all celebrities has no local weight.
    p_local[pop_cum[c_hi] - pop_cum[c_lo] <= 0.0] = 0.0
    local = rng.random(m) < p_local[src]
    dst = np.empty(m, np.int64)
    dst[local] = _pick(rng, pop_cum, c_lo[src[local]], c_hi[src[local]])
    far = int((~local).sum())
    dst[~local] = _pick(rng, pop_cum, np.zeros(far, np.int64), np.full(far, n, np.int64))
    del local
    src = np.concatenate([src, hs, cs])
    dst = np.concatenate([dst, hd, cd])
    del hs, hd, cs, cd
    keep = src != dst
    keys = arrays.unique(src[keep] * n + dst[keep])
    del src, dst, keep
    ids = rng.permutation(n).astype(np.int64) + 1
    follower, followed = ids[keys // n], ids[keys % n]
    order = np.lexsort((followed, follower))
    return follower[order], followed[order]
