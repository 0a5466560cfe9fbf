"""Candidate generators shared by the serving pipeline's sources and the
ranker's training: the same code finds the candidates a model is trained on
and the ones it later ranks.

Every generator returns ``(rows int32, scores float64)``; rows are distinct
and exclude the viewer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .ann import VectorSearch
from .bounds import Bounds
from .contacts import ContactGraph
from .store import GraphStore


@dataclass(frozen=True)
class RetrievalConfig:
    two_hop_k: int = 300
    walk_k: int = 200
    embedding_k: int = 100
    inbound_k: int = 300
    follower_k: int = 200
    friends_of_friends_k: int = 500
    # Caps on the work per request (``graph.bounds``): friends-of-friends
    # and the pre-rank read them here, the contact graph from its own.
    bounds: Bounds = field(default_factory=Bounds)


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best by score, ties to the lower row; sorted by row."""
    n = rows.shape[0]
    if n > k:
        # What lexsort((rows, -scores))[:k] keeps, in O(n): all above the
        # k-th best score, then the lowest rows among the ties at it.
        kth = np.partition(scores, n - k)[n - k]
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)
        ties = ties[np.argsort(rows[ties], kind="stable")[: k - above.shape[0]]]
        keep = np.sort(np.concatenate([above, ties]))
        rows, scores = rows[keep], scores[keep]
    return rows.astype(np.int32), scores.astype(np.float64)


def contacts_of_contacts(contacts: ContactGraph, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """People two hops away over messages and follows, by strength-weighted
    Adamic–Adar; the viewer's direct contacts are included (the pipeline
    drops the ones already messaged)."""
    hop = contacts.two_hop(row)
    return _top(hop.rows, hop.waa, k)


def random_walk(contacts: ContactGraph, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """People a short strength-weighted random walk from the viewer reaches
    most (a truncated personalised PageRank)."""
    rows, scores = contacts.walk(row)
    return _top(rows, scores, k)


def unanswered_inbound(store: GraphStore, row: int, now: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Who interacted with the viewer and got no answer, by decayed strength
    (live: read from the store, overlay included)."""
    rows, strength, _ = store.inbound_interactions(row, now)
    answered, _, _ = store.interaction_partners(row, now)
    keep = ~np.isin(rows, answered)
    return _top(rows[keep], strength[keep], k)


def followers_not_followed(store: GraphStore, row: int, k: int,
                           pool: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` lowest rows among followers the viewer does not follow.
    ``pool``: look at the first ``pool`` followers only (the same answer
    whenever ``k`` of those are not followed back)."""
    followers = store.followers(row)
    if pool is not None:
        followers = followers[:pool]
    rows = followers[~np.isin(followers, store.following(row))]
    return _top(rows, np.ones(rows.shape[0]), k)


def friends_of_friends(store: GraphStore, row: int, k: int,
                       bounds: Bounds | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two mutual-follow hops away, by friends in common (counted over the
    friends read under ``bounds``; None: all of them)."""
    b = bounds or Bounds.off()
    rows, counts = store.friends_of_friends(row, fanout=b.hub_fanout, pool=b.source_pool)
    return _top(rows, counts.astype(np.float64), k)


def embedding_neighbours(search: VectorSearch, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows, scores = search.neighbours(row, k)
    keep = scores > 0
    order = np.argsort(rows[keep], kind="stable")
    return rows[keep][order].astype(np.int32), scores[keep][order].astype(np.float64)


def new_contact_pool(store: GraphStore, contacts: ContactGraph, search: VectorSearch, row: int, now: float,
                     config: RetrievalConfig) -> npt.NDArray[np.int32]:
    """Every candidate the NEW_CONTACTS sources find, minus the viewer and
    whoever the viewer already messaged: int32 rows ascending."""
    parts = [
        contacts_of_contacts(contacts, row, config.two_hop_k)[0],
        random_walk(contacts, row, config.walk_k)[0],
        unanswered_inbound(store, row, now, config.inbound_k)[0],
        followers_not_followed(store, row, config.follower_k, config.bounds.source_pool)[0],
        embedding_neighbours(search, row, config.embedding_k)[0],
        friends_of_friends(store, row, config.friends_of_friends_k, config.bounds)[0],
    ]
    pool = np.unique(np.concatenate(parts)).astype(np.int32)
    contacted, _, _ = store.interaction_partners(row, now)
    fresh: npt.NDArray[np.int32] = pool[(pool != row) & ~np.isin(pool, contacted)]
    return fresh


def fold_in_user(search: VectorSearch, store: GraphStore, row: int, now: float) -> bool:
    """Fold a user who appeared after the snapshot into the search: the
    mean of the vectors of whom they follow, who follows them and whom they
    interacted with either way, a follow weighing 1 and an interaction
    1 + log1p(decayed strength). False when none of them has a vector."""
    out_rows, out_s, _ = store.interaction_partners(row, now)
    in_rows, in_s, _ = store.inbound_interactions(row, now)
    rows = np.concatenate([store.following(row), store.followers(row), out_rows, in_rows]).astype(np.int64)
    weights = np.concatenate([np.ones(store.following(row).shape[0] + store.followers(row).shape[0]),
                              1.0 + np.log1p(out_s), 1.0 + np.log1p(in_s)])
    return search.fold_in(row, rows, weights)
