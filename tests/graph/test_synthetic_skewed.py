"""The heavy-tailed synthetic network (graph.synthetic_skewed): seeded,
and its degrees (counted by networkx) are skewed like a social graph's."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from graph.synthetic_skewed import SkewedSpec, generate_skewed_follows

SPEC = SkewedSpec(n_users=5_000, n_edges=100_000, seed=3)


def _hill(degrees: np.ndarray, k: int) -> float:
    """Hill's estimator of the tail exponent over the k largest degrees."""
    x = np.sort(degrees)[::-1].astype(np.float64)
    return float(k / np.sum(np.log(x[:k] / x[k])))


def _nx_degrees(spec: SkewedSpec) -> tuple[np.ndarray, np.ndarray]:
    """(in-degrees, out-degrees) counted by networkx, one per user."""
    src, dst = generate_skewed_follows(spec)
    g = nx.DiGraph()
    g.add_nodes_from(range(1, spec.n_users + 1))
    g.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
    return (np.array([d for _, d in g.in_degree()]), np.array([d for _, d in g.out_degree()]))


@pytest.fixture(scope="module")
def degrees() -> tuple[np.ndarray, np.ndarray]:
    return _nx_degrees(SPEC)


class TestSkewedNetwork:
    def test_same_seed_same_edges_other_seed_other(self) -> None:
        a = generate_skewed_follows(SPEC)
        b = generate_skewed_follows(SPEC)
        c = generate_skewed_follows(SkewedSpec(n_users=5_000, n_edges=100_000, seed=4))
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert not np.array_equal(a[0], c[0])

    def test_pairs_distinct_ids_in_range_no_self_follows(self) -> None:
        src, dst = generate_skewed_follows(SPEC)
        assert src.min() >= 1 and max(src.max(), dst.max()) <= SPEC.n_users
        assert not (src == dst).any()
        assert np.unique(src * (SPEC.n_users + 1) + dst).shape[0] == src.shape[0]

    def test_hubs_both_ways(self, degrees: tuple[np.ndarray, np.ndarray]) -> None:
        """Max in- and out-degree are many times the median (a celebrity
        and a mass follower), the median in the low tens."""
        ind, outd = degrees
        assert 5 <= np.median(ind) <= 40 and 5 <= np.median(outd) <= 40
        assert ind.max() >= 20 * np.median(ind)
        assert outd.max() >= 40 * np.median(outd)

    def test_power_law_tail(self, degrees: tuple[np.ndarray, np.ndarray]) -> None:
        """The top degrees follow a power law (Hill's estimator between 1
        and 3.5; a Poisson graph's top degrees would give well above 10)."""
        ind, outd = degrees
        for d in (ind, outd):
            assert 1.0 <= _hill(d, 100) <= 3.5

    @pytest.mark.parametrize("n_users", [5_000, 20_000])
    def test_hubs_scale_with_the_network(self, n_users: int) -> None:
        """The top in- and out-degree stay a fixed share of the users as
        the network grows (most of ``max_in_fraction`` /
        ``max_out_fraction``; 110k / 190k at 1M users), with 20 follows a
        user and the median in the low tens: repeats must not eat the
        hubs' follows."""
        spec = SkewedSpec(n_users=n_users, n_edges=20 * n_users, seed=5)
        ind, outd = _nx_degrees(spec)
        assert ind.max() >= 0.9 * spec.max_in_fraction * n_users
        assert outd.max() >= 0.9 * spec.max_out_fraction * n_users
        assert 8 <= np.median(ind) <= 25 and 8 <= np.median(outd) <= 25
        # More than one hub: the top 0.5% of users hold 5% of the follows.
        top = n_users // 200
        assert np.sort(ind)[-top:].sum() >= 0.05 * ind.sum()
        assert np.sort(outd)[-top:].sum() >= 0.05 * outd.sum()
