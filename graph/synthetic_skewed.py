"""A heavy-tailed synthetic follower network: the "celebrities and mass
followers" shape the bench's second network needs (issue 15).

Chung–Lu with community structure: every user gets an out-activity and a
popularity weight, each Pareto-distributed with density exponent ``alpha``
(≈ 1.8: P(w) ~ w^-alpha, so the tail holds most of the mass), independently
drawn; a follow picks its source in proportion to activity and its target in
proportion to popularity, inside the source's community with probability
``community_affinity``, anywhere otherwise. A user's expected degree is
capped at ``max_degree_fraction`` of the users (Chung–Lu needs w_max^2 <=
sum w to stay a probability; the cap also keeps duplicates from eating the
hubs). Self-follows and repeats are dropped, so there are somewhat fewer
distinct follows than drawn.

At 1M users / 20M draws: max in- and out-degree above 100k, median degrees
in the low tens (see tests/graph/test_synthetic_skewed.py for the small-size
checks and docs/performance.md for the sizes measured). Deterministic by
seed; vectorised numpy. Returns external ids ``1..n_users`` (int64) like
``graph.synthetic.generate_follows``.
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
    max_degree_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_users < 2 or self.n_edges < 1:
            raise ValueError(f"need n_users >= 2 and n_edges >= 1, got {self.n_users}, {self.n_edges}")
        if not 1.0 < self.alpha < 3.0:
            raise ValueError(f"alpha must be in (1, 3), got {self.alpha}")
        if not 0.0 <= self.community_affinity <= 1.0:
            raise ValueError("community_affinity must be in [0, 1]")


def _weights(rng: np.random.Generator, n: int, alpha: float, cap_share: float, n_edges: int) -> F64:
    """Pareto(alpha) weights (minimum 1), each capped so that its expected
    share of ``n_edges`` is at most ``cap_share`` of ``n`` users."""
    w = (1.0 - rng.random(n)) ** (-1.0 / alpha)
    # Capping changes the total, which changes the shares: a few rounds settle it.
    for _ in range(8):
        cap = cap_share * n / n_edges * w.sum()
        if w.max() <= cap:
            break
        np.minimum(w, cap, out=w)
    return w


def _pick(rng: np.random.Generator, cum: F64, lo: I64, hi: I64) -> I64:
    """One index per (lo, hi) block, in proportion to the weights whose
    cumulative sums ``cum`` (with a leading 0) are given."""
    u = cum[lo] + rng.random(lo.shape[0]) * (cum[hi] - cum[lo])
    picked: I64 = np.minimum(np.searchsorted(cum, u, side="right") - 1, hi - 1).astype(np.int64)
    return np.maximum(picked, lo)


def generate_skewed_follows(spec: SkewedSpec) -> tuple[I64, I64]:
    """(follower ids, followed ids), int64 external ids 1..n_users, distinct
    pairs sorted by (follower, followed), no self-follows."""
    rng = np.random.default_rng(spec.seed)
    n, m = spec.n_users, spec.n_edges
    activity = _weights(rng, n, spec.alpha, spec.max_degree_fraction, m)
    popularity = _weights(rng, n, spec.alpha, spec.max_degree_fraction, m)
    # Communities are contiguous row blocks; the ids are shuffled after, so
    # ids say nothing about communities or weights.
    size = max(1, spec.community_size)
    c_lo = np.arange(n, dtype=np.int64) // size * size
    c_hi = np.minimum(c_lo + size, n)
    act_cum = np.concatenate([[0.0], np.cumsum(activity)])
    pop_cum = np.concatenate([[0.0], np.cumsum(popularity)])
    src = _pick(rng, act_cum, np.zeros(m, np.int64), np.full(m, n, np.int64))
    # A community holds ``community_size`` users: a mass follower cannot
    # keep most of its follows inside it (they would collapse as repeats),
    # so the local share shrinks once the expected degree passes the size.
    expected = activity * (m / activity.sum())
    p_local = spec.community_affinity * np.minimum(1.0, size / (4.0 * np.maximum(expected, 1.0)))
    local = rng.random(m) < p_local[src]
    dst = np.empty(m, np.int64)
    dst[local] = _pick(rng, pop_cum, c_lo[src[local]], c_hi[src[local]])
    far = int((~local).sum())
    # Far follows: half by popularity (the celebrities' audience), half
    # uniform (a mass follower's long tail; by popularity alone its draws
    # would keep hitting the same stars).
    by_pop = rng.random(far) < 0.5
    far_dst = rng.integers(0, n, far)
    far_dst[by_pop] = _pick(rng, pop_cum, np.zeros(int(by_pop.sum()), np.int64),
                            np.full(int(by_pop.sum()), n, np.int64))
    dst[~local] = far_dst
    keys = arrays.unique(src[src != dst] * n + dst[src != dst])
    ids = rng.permutation(n).astype(np.int64) + 1
    follower, followed = ids[keys // n], ids[keys % n]
    order = np.lexsort((followed, follower))
    return follower[order], followed[order]
