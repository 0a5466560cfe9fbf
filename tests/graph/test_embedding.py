"""Embeddings, the contact graph's 2-hop scores and filtered vector search."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from graph.ann import VectorSearch, build_index
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.contacts import ContactGraph
from graph.embedding import EmbeddingConfig, embed
from graph.fold import fold
from graph.ranking import before
from graph.store import GraphStore
from tests.support.temporal import temporal_messages


@pytest.fixture(scope="module")
def history() -> tuple[GraphStore, ContactGraph, float]:
    table = temporal_messages().table
    cut = float(np.quantile(table.time, 0.8))
    past = before(table, cut)
    store = fold(past, GraphConfig(), ManualClock(cut))
    return store, ContactGraph.build(past, store, cut), cut


class TestEmbedding:
    def test_same_seed_same_bits(self, history: tuple[GraphStore, ContactGraph, float]) -> None:
        """Two runs with one seed give bit-identical vectors."""
        store, _, cut = history
        a = embed(store, EmbeddingConfig(dim=16, seed=11), now=cut)
        b = embed(store, EmbeddingConfig(dim=16, seed=11), now=cut)
        assert a.dtype == np.float32 and a.shape == (store.n_rows, 16)
        assert a.tobytes() == b.tobytes()

    def test_unit_norm_or_zero(self, history: tuple[GraphStore, ContactGraph, float]) -> None:
        """Every vector is unit length, or zero for a user without edges."""
        store, _, cut = history
        v = embed(store, EmbeddingConfig(dim=16), now=cut)
        norms = np.linalg.norm(v, axis=1)
        assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))


class TestContactGraph:
    def test_two_hop_matches_networkx(self, history: tuple[GraphStore, ContactGraph, float]) -> None:
        """Common neighbours and Adamic–Adar agree with networkx on the
        undirected contact graph."""
        _, contacts, _ = history
        g = nx.Graph()
        g.add_nodes_from(range(contacts.n_rows))
        for u in range(contacts.n_rows):
            g.add_edges_from((u, int(v)) for v in contacts.neighbours(u))
        for u in (0, 5, 17):
            hop = contacts.two_hop(u)
            for v, cn, aa in zip(hop.rows.tolist(), hop.common.tolist(), hop.aa.tolist(), strict=True):
                assert cn == len(list(nx.common_neighbors(g, u, v)))
                expected = sum(1 / np.log(max(g.degree(z), 2)) for z in nx.common_neighbors(g, u, v))
                assert aa == pytest.approx(expected)

    def test_unanswered_inbound(self, history: tuple[GraphStore, ContactGraph, float]) -> None:
        """Unanswered inbound are exactly those who wrote to the user and got
        nothing back, by the store's own interactions."""
        store, contacts, cut = history
        for u in range(0, store.n_rows, 7):
            rows, _, _ = contacts.unanswered_inbound(u)
            inbound, _, _ = store.inbound_interactions(u, cut)
            sent, _, _ = store.interaction_partners(u, cut)
            assert sorted(rows.tolist()) == sorted(set(inbound.tolist()) - set(sent.tolist()))


class TestVectorSearch:
    def test_filtered_search_skips_excluded(self, history: tuple[GraphStore, ContactGraph, float]) -> None:
        """Excluded rows never come back and the k best others still do:
        the answer equals the unfiltered list with the excluded removed."""
        store, _, cut = history
        v = embed(store, EmbeddingConfig(dim=16), now=cut)
        search = VectorSearch(v, build_index(v))
        row = int(np.flatnonzero(np.linalg.norm(v, axis=1) > 0)[0])
        full, _ = search.neighbours(row, store.n_rows)
        exclude = full[:15]
        rows, scores = search.neighbours(row, 10, exclude=exclude)
        assert rows.shape[0] == 10 and not np.isin(rows, exclude).any()
        assert rows.tolist() == full[15:25].tolist()
        assert np.all(np.diff(scores) <= 1e-6)

    def test_excluding_everything_returns_empty(self, history: tuple[GraphStore, ContactGraph, float]) -> None:
        store, _, cut = history
        v = embed(store, EmbeddingConfig(dim=16), now=cut)
        search = VectorSearch(v, build_index(v))
        row = int(np.flatnonzero(np.linalg.norm(v, axis=1) > 0)[0])
        rows, _ = search.neighbours(row, 5, exclude=np.arange(store.n_rows))
        assert rows.shape[0] == 0


    def test_prefetch_answers_as_single_searches(self, history: tuple[GraphStore, ContactGraph, float]) -> None:
        """Prefetched answers equal one-by-one searches (hidden rows
        included), and hiding a row afterwards is honoured at once."""
        store, _, cut = history
        v = embed(store, EmbeddingConfig(dim=16), now=cut)
        rows = np.flatnonzero(np.linalg.norm(v, axis=1) > 0)[:40]
        single = VectorSearch(v, build_index(v))
        batched = VectorSearch(v, build_index(v))
        single.hide(rows[:3])
        batched.hide(rows[:3])
        expected = {int(r): single.neighbours(int(r), 8) for r in rows}
        batched.prefetch(rows, 8)
        for r in rows.tolist():
            got, want = batched.neighbours(r, 5), expected[r]
            assert got[0].tolist() == want[0][:5].tolist()
            assert np.allclose(got[1], want[1][:5])
        victim = int(expected[int(rows[5])][0][0])
        batched.hide(np.array([victim]))
        assert victim not in batched.neighbours(int(rows[5]), 8)[0].tolist()

class TestFoldIn:
    @pytest.fixture()
    def search(self, history: tuple[GraphStore, ContactGraph, float]) -> VectorSearch:
        store, _, cut = history
        v = embed(store, EmbeddingConfig(dim=16), now=cut)
        return VectorSearch(v, build_index(v))

    def test_new_user_gets_the_mean_and_is_found(self, search: VectorSearch) -> None:
        """A user folded in from one neighbour gets that neighbour's
        direction and at once comes back from the neighbour's search."""
        new = search.vectors.shape[0] + 3
        anchor = int(np.flatnonzero(np.linalg.norm(search.vectors, axis=1) > 0)[0])
        assert search.fold_in(new, np.array([anchor]))
        vec = search.vector(new)
        assert vec is not None and np.allclose(vec, search.vectors[anchor], atol=1e-6)
        rows, scores = search.neighbours(anchor, 5)
        assert rows[0] == new and scores[0] == pytest.approx(1.0, abs=1e-5)
        own, _ = search.neighbours(new, 5)
        assert own[0] == anchor and new not in own.tolist()

    def test_weighted_mean(self, search: VectorSearch) -> None:
        live = np.flatnonzero(np.linalg.norm(search.vectors, axis=1) > 0)[:2]
        new = search.vectors.shape[0]
        assert search.fold_in(new, live, np.array([3.0, 1.0]))
        expected = 3 * search.vectors[live[0]].astype(np.float64) + search.vectors[live[1]]
        np.testing.assert_allclose(search.vector(new), expected / np.linalg.norm(expected), atol=1e-6)

    def test_no_neighbour_vector(self, search: VectorSearch) -> None:
        new = search.vectors.shape[0]
        assert not search.fold_in(new, np.array([new + 10]))
        assert search.vector(new) is None and search.neighbours(new, 5)[0].shape[0] == 0

    def test_hidden_rows_never_returned(self, search: VectorSearch) -> None:
        """Hiding (erased, banned, suspended) takes effect on the next search,
        folded-in rows included."""
        anchor = int(np.flatnonzero(np.linalg.norm(search.vectors, axis=1) > 0)[0])
        new = search.vectors.shape[0]
        search.fold_in(new, np.array([anchor]))
        before, _ = search.neighbours(anchor, 10)
        search.hide(before[:4])
        after, _ = search.neighbours(anchor, 10)
        assert after.shape[0] == 10 and not np.isin(after, before[:4]).any()
        assert after[:6].tolist() == before[4:].tolist()

    def test_fold_in_from_the_store(self, search: VectorSearch) -> None:
        """A user who first appears after the snapshot (a follow and a
        message) is folded in from the live store."""
        from graph.model import Event, EventKind
        from graph.retrieval import fold_in_user

        table = temporal_messages().table
        cut = float(np.quantile(table.time, 0.8))
        store = fold(before(table, cut), GraphConfig(), ManualClock(cut))  # the fixture's, but ours to change
        known = [store.ids.ext_of(r) for r in np.flatnonzero(np.linalg.norm(search.vectors, axis=1) > 0)[:2]]
        new_id = 10_000
        store.apply(Event("fi-1", cut + 1, EventKind.FOLLOW, new_id, known[0]))
        store.apply(Event("fi-2", cut + 2, EventKind.INTERACTION, new_id, known[1], detail=1))
        row = store.row(new_id)
        assert row >= search.vectors.shape[0]
        assert fold_in_user(search, store, row, cut + 3)
        rows, _ = search.neighbours(row, 3)
        assert set(rows.tolist()) & {store.row(k) for k in known}


class TestPropagation:
    """ProNE's spectral propagation against dense numpy on small graphs."""

    @staticmethod
    def _dense(norm: np.ndarray, vectors: np.ndarray, mu: float, theta: float) -> np.ndarray:
        """Â (I - g(L)) R with g applied exactly through L's eigenvectors."""
        from graph.embedding import band_pass

        lam, basis = np.linalg.eigh(np.eye(norm.shape[0]) - norm)
        filtered = basis @ (band_pass(lam, mu, theta)[:, None] * (basis.T @ vectors))
        return np.asarray(norm @ (vectors - filtered), np.float64)

    def test_chebyshev_propagation_matches_dense_filter(self, history: tuple[GraphStore, ContactGraph, float]) -> None:
        """The Chebyshev recurrence gives what the eigendecomposition of the
        normalised Laplacian gives, for ProNE's parameters and ours."""
        from graph.embedding import adjacency, normalised, propagate

        store, _, cut = history
        norm, _ = normalised(adjacency(store, EmbeddingConfig(), cut))
        vectors = np.random.default_rng(5).standard_normal((store.n_rows, 8)).astype(np.float32)
        for mu, theta in ((0.2, 0.5), (0.65, 1.0), (1.5, 2.0)):
            config = EmbeddingConfig(propagation_order=12, mu=mu, theta=theta)
            got = propagate(norm, vectors, config)
            want = self._dense(norm.toarray().astype(np.float64), vectors.astype(np.float64), mu, theta)
            assert got.dtype == np.float32 and got.shape == vectors.shape
            np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())

    def test_hand_graph(self) -> None:
        """A path 0-1-2 plus an isolated row 3: the dense formula by hand,
        and the isolated row stays zero."""
        import scipy.sparse as sp

        from graph.embedding import normalised, propagate

        adj = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 2, 0], [0, 2, 0, 0], [0, 0, 0, 0]], np.float32))
        norm, degree = normalised(adj)
        assert degree.tolist() == [1, 3, 2, 0]
        vectors = np.array([[1, 0], [0, 1], [1, 1], [5, 5]], np.float32)
        got = propagate(norm, vectors, EmbeddingConfig(propagation_order=10))
        want = self._dense(norm.toarray().astype(np.float64), vectors.astype(np.float64), 0.65, 1.0)
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert not got[3].any()

    def test_coefficients_reproduce_the_filter(self) -> None:
        """The interpolated Chebyshev series is the band-pass filter on
        [0, 2] to within its truncation."""
        import numpy.polynomial.chebyshev as cheb

        from graph.embedding import band_pass, filter_coefficients

        lam = np.linspace(0.0, 2.0, 401)
        for order, tol in ((6, 5e-4), (10, 1e-6)):
            approx = cheb.chebval(lam - 1.0, filter_coefficients(order, 0.65, 1.0))
            assert np.abs(approx - band_pass(lam, 0.65, 1.0)).max() < tol

    def test_svd_rows_keeps_the_row_geometry(self) -> None:
        """U Σ^1/2 of the block: Gram matrix U Σ Uᵀ, as numpy's SVD says."""
        from graph.embedding import _svd_rows

        block = np.random.default_rng(2).standard_normal((300, 6)).astype(np.float32)
        block[:, 5] = block[:, 0]  # rank 5: the sixth direction gets a zero column
        u, s, _ = np.linalg.svd(block.astype(np.float64), full_matrices=False)
        rows = _svd_rows(block)
        np.testing.assert_allclose(rows @ rows.T, (u * s) @ u.T, atol=1e-4)
        assert np.abs(rows).max(axis=0).min() == 0.0

    def test_propagated_embedding_is_deterministic_and_differs(self,
                                                              history: tuple[GraphStore, ContactGraph, float]) -> None:
        """With propagation: bit-identical for a seed, unit norm, and not
        the unpropagated vectors."""
        store, _, cut = history
        on = EmbeddingConfig(dim=16, seed=3, propagation_order=6)
        a, b = embed(store, on, now=cut), embed(store, on, now=cut)
        off = embed(store, EmbeddingConfig(dim=16, seed=3, propagation_order=0), now=cut)
        assert a.tobytes() == b.tobytes() and a.shape == (store.n_rows, 16)
        norms = np.linalg.norm(a, axis=1)
        assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))
        assert not np.allclose(a, off, atol=1e-3)

    def test_bad_config_is_refused(self) -> None:
        for bad in ({"propagation_order": -1}, {"mu": 2.5}, {"theta": 0.0}, {"dim": 0}):
            with pytest.raises(ValueError):
                EmbeddingConfig(**bad)
