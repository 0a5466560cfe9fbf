"""The baselines the pipeline is measured against, all over the same
training snapshot: popularity, common neighbours, Adamic–Adar, personalised
PageRank (networkx's power iteration, its transition matrix built once
per snapshot), unanswered inbound by recency then Adamic–Adar, and
embedding neighbours alone (``embedding_only``: ours, and with ``eval
--node2vec`` the same ranking over node2vec vectors, see ``node2vec.py``).

The graph they see is the undirected, unweighted interaction graph of the
training events (plus follows, where a data set has them). Each returns the
viewer's top ``depth`` rows, best first, ties to the lower row, never the
viewer nor anyone the viewer already messaged (they are not new contacts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.sparse as sp

from graph.ann import VectorSearch
from graph.contacts import ContactGraph
from graph.store import GraphStore


@dataclass
class BaselineContext:
    store: GraphStore
    contacts: ContactGraph
    search: VectorSearch
    adjacency: sp.csr_matrix  # (n, n) float64, symmetric 0/1
    aa_weighted: sp.csr_matrix  # adjacency with column z scaled by 1 / log(deg z)
    popularity: np.ndarray  # rows by distinct senders, most first
    transition: sp.csr_matrix  # adjacency with each row scaled to sum 1 (0 rows stay 0)
    dangling: np.ndarray  # rows without an edge

    @staticmethod
    def of(store: GraphStore, contacts: ContactGraph, search: VectorSearch) -> BaselineContext:
        n = contacts.n_rows
        rows = np.repeat(np.arange(n), np.diff(contacts.indptr))
        adj = sp.csr_matrix((np.ones(rows.shape[0]), (rows, contacts.indices.astype(np.int64))), shape=(n, n))
        deg = np.asarray(adj.sum(axis=1)).ravel()
        inv_log = np.where(deg > 1, 1.0 / np.log(np.maximum(deg, 2.0)), 0.0)
        senders = contacts.in_partners.astype(np.int64)
        popularity = np.lexsort((np.arange(n), -senders))
        inv_deg = np.divide(1.0, deg, out=np.zeros(n), where=deg > 0)
        transition = (sp.diags(inv_deg) @ adj).tocsr()
        return BaselineContext(store, contacts, search, adj, (adj @ sp.diags(inv_log)).tocsr(), popularity,
                               transition, np.flatnonzero(deg == 0))

    def excluded(self, row: int) -> np.ndarray:
        """The viewer and everyone the viewer messaged before."""
        start, end = self.contacts.span(row)
        sent = self.contacts.indices[start:end][self.contacts.out_n[start:end] > 0]
        return np.concatenate([[row], sent]).astype(np.int64)


def _rank(scores: np.ndarray, excluded: np.ndarray, depth: int) -> np.ndarray:
    """Rows with a positive score, best first, ties to the lower row."""
    scores = scores.copy()
    scores[excluded] = 0.0
    rows = np.flatnonzero(scores > 0)
    order = np.lexsort((rows, -scores[rows]))
    return rows[order][:depth]


def popularity(ctx: BaselineContext, row: int, depth: int) -> np.ndarray:
    excluded = ctx.excluded(row)
    head = ctx.popularity[: depth + excluded.shape[0]]
    return head[~np.isin(head, excluded)][:depth]


def common_neighbours(ctx: BaselineContext, row: int, depth: int) -> np.ndarray:
    scores = (ctx.adjacency[row] @ ctx.adjacency).toarray().ravel()
    return _rank(scores, ctx.excluded(row), depth)


def adamic_adar(ctx: BaselineContext, row: int, depth: int) -> np.ndarray:
    scores = (ctx.aa_weighted[row] @ ctx.adjacency).toarray().ravel()
    return _rank(scores, ctx.excluded(row), depth)


def pagerank_from(ctx: BaselineContext, row: int, alpha: float = 0.85, tol: float = 1e-8,
                  max_iter: int = 100) -> np.ndarray:
    """``nx.pagerank(graph, alpha, personalization={row: 1}, tol=tol)``
    as an array over rows: networkx's own power iteration (start uniform,
    dangling mass back to the viewer, stop when the L1 change is below
    n * tol), without rebuilding the sparse matrix per viewer, which on a
    300k-user graph cost seconds a call."""
    n = ctx.contacts.n_rows
    p = np.zeros(n)
    p[row] = 1.0
    x = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        last = x
        x = alpha * (x @ ctx.transition + float(x[ctx.dangling].sum()) * p) + (1 - alpha) * p
        if float(np.abs(x - last).sum()) < n * tol:
            return np.asarray(x)
    raise nx.PowerIterationFailedConvergence(max_iter)


def personalised_pagerank(ctx: BaselineContext, row: int, depth: int, alpha: float = 0.85) -> np.ndarray:
    if ctx.contacts.indptr[row + 1] == ctx.contacts.indptr[row]:
        return np.zeros(0, np.int64)
    return _rank(pagerank_from(ctx, row, alpha), ctx.excluded(row), depth)


def inbound_then_adamic_adar(ctx: BaselineContext, row: int, depth: int) -> np.ndarray:
    rows, _, last = ctx.contacts.unanswered_inbound(row)
    first = rows[np.lexsort((rows, -last))].astype(np.int64)
    rest = adamic_adar(ctx, row, depth + first.shape[0])
    return np.concatenate([first, rest[~np.isin(rest, first)]])[:depth]


def embedding_only(ctx: BaselineContext, row: int, depth: int) -> np.ndarray:
    excluded = ctx.excluded(row)
    rows, scores = ctx.search.neighbours(row, depth + excluded.shape[0])
    keep = (scores > 0) & ~np.isin(rows, excluded)
    return rows[keep][:depth].astype(np.int64)


BASELINES: dict[str, Callable[[BaselineContext, int, int], np.ndarray]] = {
    "popularity": popularity,
    "common-neighbours": common_neighbours,
    "adamic-adar": adamic_adar,
    "ppr": personalised_pagerank,
    "inbound+aa": inbound_then_adamic_adar,
    "embedding": embedding_only,
}
