"""The suggestion flow: viewer eligibility -> candidate sources -> safety
filters -> ranker. Plain Python over ``graph``; no gRPC here."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from graph.ann import VectorSearch
from graph.contacts import ContactGraph
from graph.model import Surface
from graph.ranking import RankingModel
from graph.retrieval import RetrievalConfig
from graph.store import GraphStore

from ..request_scope import checkpoint, record_counts
from .candidates import Candidates, SourceResult
from .filters import SafetyEngine
from .ranker import LearnedRanker, LinearRanker, Ranker
from .reasons import FilterReason, SuggestionReason
from .sources import (ContactsOfContacts, EmbeddingNeighbours, FollowsYou, FriendsOfFriends, MessagedYou,
                      RandomWalk, RecentContacts)

log = logging.getLogger(__name__)


@dataclass
class Ranked:
    """A viewer's whole ranked, filtered list (pages are cut from it)."""

    user_ids: np.ndarray  # int64, best first
    scores: np.ndarray  # float64
    reasons: list[list[SuggestionReason]]
    mutual_counts: np.ndarray  # int64
    ineligible: FilterReason | None = None
    counts: dict[str, int] = field(default_factory=dict)  # per-stage counts for logs

    @staticmethod
    def empty(reason: FilterReason | None) -> "Ranked":
        return Ranked(np.zeros(0, np.int64), np.zeros(0), [], np.zeros(0, np.int64), reason)


class Pipeline:
    """``contacts``: the snapshot's contact graph, which adds the
    contacts-of-contacts source (2-hop over messages, not only mutual
    follows); without it only the store's sources run. ``ranker``: the
    learned ranker when the snapshot has a model, else the linear blend
    (``Pipeline.of`` picks)."""

    def __init__(self, store: GraphStore, search: VectorSearch, ranker: Ranker | None = None,
                 max_candidates: int = 500, safety: SafetyEngine | None = None, *,
                 contacts: ContactGraph | None = None, retrieval: RetrievalConfig | None = None) -> None:
        self.store = store
        self.safety = safety or default_safety(store)
        self.search = search
        self.ranker: Ranker = ranker or LinearRanker()
        self.max_candidates = max_candidates
        r = retrieval or RetrievalConfig()
        self._new_contact_sources = [
            EmbeddingNeighbours(search, r.embedding_k), FriendsOfFriends(store, r.friends_of_friends_k),
            MessagedYou(store, r.inbound_k), FollowsYou(store, r.follower_k),
        ]
        if contacts is not None:
            self._new_contact_sources += [ContactsOfContacts(contacts, r.two_hop_k), RandomWalk(contacts, r.walk_k)]
        self._share_sources = [RecentContacts(store), *self._new_contact_sources]

    def sources_for(self, surface: Surface) -> list:  # type: ignore[type-arg]
        """The candidate sources a surface draws on (callables returning
        SourceResult, each with a stable ``name``)."""
        return self._share_sources if surface == Surface.SHARE_SHEET else self._new_contact_sources

    @staticmethod
    def of(store: GraphStore, search: VectorSearch, contacts: ContactGraph | None,
           model: RankingModel | None, *, max_candidates: int = 500, safety: SafetyEngine | None = None,
           retrieval: RetrievalConfig | None = None) -> "Pipeline":
        """The pipeline for a snapshot's parts: the learned ranker when a
        model and its contact graph are there, the linear one otherwise."""
        ranker: Ranker = LinearRanker()
        if model is not None and contacts is not None:
            ranker = LearnedRanker(model, contacts, search.vectors)
        return Pipeline(store, search, ranker, max_candidates, safety, contacts=contacts, retrieval=retrieval)

    def _mutual_friend_counts(self, row: int, rows: np.ndarray) -> np.ndarray:
        """Friends in common with the viewer for each row (int64)."""
        fof, counts = self.store.friends_of_friends(row)
        out = np.zeros(rows.shape[0], np.int64)
        if fof.shape[0]:
            pos = np.minimum(np.searchsorted(fof, rows), fof.shape[0] - 1)
            hit = fof[pos] == rows
            out[hit] = counts[pos[hit]]
        return out

    def suggest(self, user_id: int, surface: Surface, now: float | None = None) -> Ranked:
        now = self.store.clock.now() if now is None else now
        surface = Surface.NEW_CONTACTS if surface == Surface.UNSPECIFIED else surface
        row = self.store.row(user_id)
        reason = self.safety.viewer_ineligibility(self.store, row)
        if reason is not None:
            return Ranked.empty(reason)
        sources = self.sources_for(surface)
        results: list[SourceResult] = [source(row, now) for source in sources]
        checkpoint("sources")  # the caller's deadline passed or it left: stop here
        candidates = Candidates.merge(results)
        counts = {f"source.{r.name}": int(r.rows.shape[0]) for r in results}
        if surface == Surface.NEW_CONTACTS:
            # People the viewer already messaged are not new contacts.
            contacted, _, _ = self.store.interaction_partners(row, now)
            candidates = candidates.select(~np.isin(candidates.rows, contacted))
        verdict = self.safety.filter_suggestions(self.store, row, candidates.rows, now)
        for r, n in verdict.removed.items():
            counts[f"filter.{r.name.lower()}"] = n
        candidates = candidates.select(verdict.keep)
        checkpoint("filters")
        scores = self.ranker.rank_scores(row, candidates, surface, now)
        user_ids = self.store.ids.ext(candidates.rows)
        order = self.ranker.order(scores, user_ids)[: self.max_candidates]
        mutual = self._mutual_friend_counts(row, candidates.rows[order])
        reason_of = {r.name: r.reason for r in results}
        reasons = []
        for rank, i in enumerate(order.tolist()):
            # One entry per reason (two sources may share one), and "mutual
            # friends" only when there are some (a contact-graph source can
            # find people through message partners who are not friends).
            found = dict.fromkeys(reason_of[name] for name, hit in candidates.found_by.items() if hit[i])
            if mutual[rank] == 0:
                found.pop(SuggestionReason.MUTUAL_FRIENDS, None)
            reasons.append(list(found))
        counts["ranked"] = int(order.shape[0])
        record_counts(counts)  # per-source and per-reason metrics of a served call
        return Ranked(user_ids[order], scores[order], reasons, mutual, None, counts)


def default_safety(store: GraphStore) -> SafetyEngine:
    """The built-in policy, no guardians, a fresh impression memory."""
    import secrets

    from ..safety.exposure import ImpressionLedger
    from ..safety.guardian import GuardianRegistry
    from ..safety.policy import PolicyHolder

    return SafetyEngine(PolicyHolder(), GuardianRegistry(secrets.token_bytes(32), store.clock), ImpressionLedger())
