"""Bounded work per request (graph.bounds): on a star whose hub has 100k
ties the caps bound the entries a source reads, counted from what the
sources return; with the caps out of reach the answers equal the uncapped
ones (hypothesis, oracle = no caps / a plain count)."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.bounds import Bounds
from graph.contacts import ContactConfig, ContactGraph
from graph.csr import from_pairs
from graph.relations import EdgeSet
from graph.store import GraphStore

N = 100_000  # the hub's ties
CAPS = Bounds(hub_fanout=200, source_pool=5_000, pre_rank_keep=300)
HUGE = Bounds(hub_fanout=10**9, source_pool=10**12, pre_rank_keep=10**9)


def _friend_store(src: np.ndarray, dst: np.ndarray, n: int) -> GraphStore:
    """A store whose only data is the friendships (src[i], dst[i]), both
    directions given."""
    store = GraphStore.empty()
    built = EdgeSet.build(src, dst, n, threading.RLock(), with_in=False)
    store.friends.swap_base(built.base()[0], None)
    return store


def _contact_graph(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, n: int,
                   bounds: Bounds) -> ContactGraph:
    """A contact graph of the undirected ties (src[i], dst[i]) with
    ``weight[i]``, both directions given; the other statistics zero."""
    csr = from_pairs(src, dst, n, {"weight": weight.astype(np.float32)})
    m = csr.indices.shape[0]
    degree = np.diff(csr.indptr).astype(np.int32)
    rows = np.repeat(np.arange(n), degree)
    arrays = {
        "indptr": csr.indptr.astype(np.int64), "indices": csr.indices.astype(np.int32),
        "out_s": np.zeros((m, 2), np.float32), "in_s": np.zeros((m, 2), np.float32),
        "out_n": np.zeros(m, np.float32), "in_n": np.zeros(m, np.float32), "last": np.zeros(m),
        "last_in": np.zeros(m), "follow": np.zeros(m, np.uint8), "weight": csr.values["weight"],
        "degree": degree, "weight_sum": np.bincount(rows, csr.values["weight"], n).astype(np.float32),
        **{k: np.zeros(n, np.int32) for k in ("out_partners", "in_partners", "answered")},
        "last_active": np.zeros(n), "out_short": np.zeros(n, np.float32), "in_short": np.zeros(n, np.float32),
    }
    return ContactGraph(arrays, 0.0, ContactConfig(), bounds)


def _star() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hub 0 tied to leaves 1..N, both directions; tie weight varies."""
    leaves = np.arange(1, N + 1, dtype=np.int64)
    src = np.concatenate([np.zeros(N, np.int64), leaves])
    dst = np.concatenate([leaves, np.zeros(N, np.int64)])
    w = np.tile((leaves * 7919 % 1000) / 1000.0, 2)
    return src, dst, w


class _Counting(ContactGraph):
    """Records the entries each expansion reads."""

    reads: list[int]

    def expand(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        offsets, owner = super().expand(nodes)
        self.reads.append(int(offsets.shape[0]))
        return offsets, owner


@pytest.fixture(scope="module")
def store() -> GraphStore:
    src, dst, _ = _star()
    return _friend_store(src, dst, N + 1)


@pytest.fixture(scope="module")
def parts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _star()


class TestStarFriendsOfFriends:
    def test_uncapped_reads_every_friend_of_the_hub(self, store: GraphStore) -> None:
        """Without caps a leaf's friends-of-friends counts all N-1 others."""
        _, counts = store.friends_of_friends(1)
        assert int(counts.sum()) == N - 1

    @pytest.mark.parametrize("viewer", [0, 1, N])
    def test_caps_bound_the_friends_read(self, store: GraphStore, viewer: int) -> None:
        """Hub or leaf, at most hub_fanout entries come back counted (the
        viewer's friends and each hub sampled to the fan-out)."""
        rows, counts = store.friends_of_friends(viewer, fanout=200, pool=5_000)
        assert int(counts.sum()) <= 200 and rows.shape[0] <= 200
        assert viewer not in rows.tolist()

    def test_sample_spreads_over_the_hub_list(self, store: GraphStore) -> None:
        """The hub's sample is spread over its rows, not its first ones."""
        rows, _ = store.friends_of_friends(1, fanout=200, pool=5_000)
        assert rows.max() > N // 2 and rows.min() < N // 100

    def test_an_unfriending_in_the_overlay_is_honoured_under_caps(self, store: GraphStore) -> None:
        """A leaf the sample would read, unfriended since the snapshot, is
        not counted."""
        src, dst, _ = _star()
        live = _friend_store(src, dst, N + 1)
        rows, _ = live.friends_of_friends(1, fanout=200, pool=5_000)
        gone = int(rows[0])
        live.friends.remove(0, gone)
        live.friends.remove(gone, 0)
        after, _ = live.friends_of_friends(1, fanout=200, pool=5_000)
        assert gone not in after.tolist()


class TestStarContactGraph:
    def test_uncapped_two_hop_reads_the_whole_hub(self, parts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Without caps a leaf reaches all N-1 other leaves through the hub."""
        hop = _contact_graph(*parts, N + 1, Bounds.off()).two_hop(1)
        assert int(hop.common.sum()) == N - 1 and hop.rows.shape[0] == N - 1

    @pytest.mark.parametrize("viewer", [0, 1])
    def test_caps_bound_two_hop_and_walk(self, parts: tuple[np.ndarray, np.ndarray, np.ndarray],
                                         viewer: int) -> None:
        """Every expansion reads at most source_pool entries and the 2-hop
        reach counts at most hub_fanout * hub_fanout entries."""
        src, dst, w = parts
        g = _contact_graph(src, dst, w, N + 1, CAPS)
        counting = _Counting(g.to_arrays(), 0.0, g.config, CAPS)
        counting.reads = []
        hop = counting.two_hop(viewer)
        counting.walk(viewer)
        assert counting.reads and max(counting.reads) <= 200 * 200
        assert max(counting.reads) <= CAPS.source_pool  # type: ignore[operator]
        assert int(hop.common.sum()) <= 200 * 200

    def test_a_hub_gives_its_strongest_ties(self, parts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Through the hub, a leaf reaches the hub's 200 strongest ties."""
        src, dst, w = parts
        g = _contact_graph(src, dst, w, N + 1, CAPS)
        hop = g.two_hop(5)
        start, end = g.span(0)
        strongest = set(g.indices[start:end][np.lexsort((np.arange(end - start), -g.weight[start:end]))][:200]
                        .tolist())
        assert set(hop.rows.tolist()) <= strongest


def _random_graph(data: st.DataObject) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n = data.draw(st.integers(2, 30))
    pairs = data.draw(st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=120))
    und = sorted({(min(a, b), max(a, b)) for a, b in pairs if a != b})
    if not und:
        und = [(0, 1)]
    a = np.array([p[0] for p in und], np.int64)
    b = np.array([p[1] for p in und], np.int64)
    w = np.array(data.draw(st.lists(st.sampled_from([0.1, 0.5, 1.0, 2.0]), min_size=len(und),
                                    max_size=len(und))))
    return np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([w, w]), n


class TestCapsOutOfReach:
    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_friends_of_friends_equals_a_plain_count(self, data: st.DataObject) -> None:
        """Uncapped and out-of-reach caps both count exactly what a plain
        count over the friend lists does."""
        src, dst, _, n = _random_graph(data)
        store = _friend_store(src, dst, n)
        friends: dict[int, set[int]] = {u: set() for u in range(n)}
        for a, b in zip(src.tolist(), dst.tolist(), strict=True):
            friends[a].add(b)
        for u in range(n):
            want = Counter(v for f in friends[u] for v in friends[f] if v != u and v not in friends[u])
            for kwargs in ({}, {"fanout": HUGE.hub_fanout, "pool": HUGE.source_pool}):
                rows, counts = store.friends_of_friends(u, **kwargs)
                assert dict(zip(rows.tolist(), counts.tolist(), strict=True)) == dict(want)

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_two_hop_and_walk_equal_uncapped(self, data: st.DataObject) -> None:
        """Caps out of reach give the uncapped 2-hop reach and walk (the
        same sums, up to rounding from the strongest-first order)."""
        src, dst, w, n = _random_graph(data)
        off = _contact_graph(src, dst, w, n, Bounds.off())
        huge = off.with_bounds(HUGE)
        for u in range(n):
            a, b = off.two_hop(u), huge.two_hop(u)
            assert np.array_equal(a.rows, b.rows)
            for x, y in ((a.common, b.common), (a.aa, b.aa), (a.waa, b.waa)):
                np.testing.assert_allclose(x, y, rtol=1e-12)
            (ra, sa), (rb, sb) = off.walk(u), huge.walk(u)
            assert np.array_equal(ra, rb)
            np.testing.assert_allclose(sa, sb, rtol=1e-9)
