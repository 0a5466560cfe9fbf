"""The suggestion flow: viewer eligibility -> candidate sources -> safety
filters -> ranker. Plain Python over ``graph``; no gRPC here."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from graph.ann import VectorSearch
from graph.contacts import ContactGraph
from graph.model import Surface
from graph.ranking import RankingModel
from graph.retrieval import RetrievalConfig
from graph.store import GraphStore

from service.server.request_scope import checkpoint, record_counts
from service.pipeline.candidates import Candidates, SourceResult
from service.pipeline.filters import SafetyEngine, Viewer, member
from service.pipeline.ranker import LearnedRanker, LinearRanker, Ranker
from service.pipeline.reasons import FilterReason, SuggestionReason
from service.pipeline.sources import (ContactsOfContacts, EmbeddingNeighbours, FollowsYou, FriendsOfFriends, MessagedYou,
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

    def _mutual_friend_counts(self, row: int, rows: np.ndarray, every_fof: SourceResult | None = None, *,
                              through: np.ndarray | None = None) -> np.ndarray:
        """Friends in common with the viewer for each row (int64; distinct
        rows), 0 for the viewer and the viewer's friends, as
        ``GraphStore.friends_of_friends`` counts. ``through``: count only
        these of the viewer's friends (sorted rows; the ones the viewer may
        be told of, ``SafetyEngine.nameable_friends``); None counts every
        friend. ``every_fof``: the friends-of-friends source's answer when
        it holds every friend of a friend (not cut to its limit): read from
        it when every friend counts. Otherwise one gather of the counted
        friends' friend lists, counted only for these rows."""
        out = np.zeros(rows.shape[0], np.int64)
        friends = self.store.friends_of(row)
        every = through is None or through.shape[0] == friends.shape[0]
        if every_fof is not None and every:
            known = every_fof.rows
            hit = member(known, rows)
            out[hit] = every_fof.scores[known.searchsorted(rows[hit])].astype(np.int64)
            return out
        counted = friends if every else through
        assert counted is not None
        if counted.shape[0] == 0 or rows.shape[0] == 0:
            return out
        reach = self.store.gather_friends(counted)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        pos = np.minimum(ordered.searchsorted(reach), ordered.shape[0] - 1)
        hit = ordered[pos] == reach
        out[order] = np.bincount(pos[hit], minlength=ordered.shape[0])
        out[(rows == row) | member(friends, rows)] = 0
        return out

    def suggest(self, user_id: int, surface: Surface, now: float | None = None, *, limit: int | None = None,
                exclude: Sequence[int] = ()) -> Ranked:
        """The viewer's ranked, safety-filtered suggestions, best first (at
        most ``max_candidates``).

        Every candidate is ranked, then the safety filters run down the
        ranking in batches ("filter and take"). ``limit``: stop once that
        many candidates not in ``exclude`` (external ids, e.g. the ones a
        page token says were shown) have passed; the answer then holds the
        head of the full answer, at least ``limit`` of them outside
        ``exclude`` unless the candidates ran out. None: filter them all."""
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
            contacted = member(self.store.interactions.out(row)[0], candidates.rows)
            if contacted.any():
                candidates = candidates.select(~contacted)
        scores = self.ranker.rank_scores(row, candidates, surface, now)
        user_ids = self.store.ids.ext(candidates.rows)
        order = self.ranker.order(scores, user_ids)
        facts = self.safety.viewer(self.store, row, now)
        kept, removed = self._filter_and_take(row, candidates.rows, user_ids, order, now, limit, exclude, facts)
        for r, n in removed.items():
            counts[f"filter.{r.name.lower()}"] = n
        checkpoint("filters")
        every_fof = next((r for source, r in zip(sources, results)
                          if isinstance(source, FriendsOfFriends) and r.rows.shape[0] < source.limit), None)
        # Only friends the viewer may be told of count (and so name the
        # MUTUAL_FRIENDS reason): a hidden minor or a banned account among
        # them would tell the viewer whom the candidate is friends with.
        mutual = self._mutual_friend_counts(row, candidates.rows[kept], every_fof,
                                            through=self.safety.nameable_friends(facts) if kept.shape[0] else None)
        reason_of = {r.name: r.reason for r in results}
        hits = [(reason_of[name], found[kept].tolist()) for name, found in candidates.found_by.items()]
        reasons = []
        for rank in range(kept.shape[0]):
            # One entry per reason (two sources may share one), and "mutual
            # friends" only when there are some (a contact-graph source can
            # find people through message partners who are not friends).
            found_by = dict.fromkeys(r for r, hit in hits if hit[rank])
            if mutual[rank] == 0:
                found_by.pop(SuggestionReason.MUTUAL_FRIENDS, None)
            reasons.append(list(found_by))
        counts["ranked"] = int(kept.shape[0])
        record_counts(counts)  # per-source and per-reason metrics of a served call
        return Ranked(user_ids[kept], scores[kept], reasons, mutual, None, counts)

    # The first batch filtered holds this many candidates per one wanted
    # (about half of them pass on the synthetic network), plus a margin;
    # each later batch doubles.
    _BATCH_PER_WANTED = 2
    _BATCH_MARGIN = 8

    def _filter_and_take(self, row: int, rows: np.ndarray, user_ids: np.ndarray, order: np.ndarray, now: float,
                         limit: int | None, exclude: Sequence[int], facts: Viewer | None = None
                         ) -> tuple[np.ndarray, dict[FilterReason, int]]:
        """Indices into ``rows`` that pass the safety filters, in ``order``
        (at most ``max_candidates``; see ``suggest`` for ``limit``), and the
        removals by first reason among the candidates examined. ``facts``:
        the request's viewer facts, if already fetched."""
        facts = facts if facts is not None else self.safety.viewer(self.store, row, now)
        excluded = np.unique(np.asarray(exclude, np.int64))
        removed: dict[FilterReason, int] = {}
        kept: list[np.ndarray] = []
        n_kept = n_fresh = 0
        start = 0
        batch = order.shape[0] if limit is None else (limit + excluded.shape[0]) * self._BATCH_PER_WANTED \
            + self._BATCH_MARGIN
        while start < order.shape[0] and n_kept < self.max_candidates and (limit is None or n_fresh < limit):
            idx = order[start:start + batch]
            start += idx.shape[0]
            batch *= 2
            verdict = self.safety.filter_suggestions(self.store, row, rows[idx], now, facts=facts)
            for r, n in verdict.removed.items():
                removed[r] = removed.get(r, 0) + n
            passed = idx[verdict.keep][: self.max_candidates - n_kept]
            kept.append(passed)
            n_kept += passed.shape[0]
            if limit is not None:
                n_fresh += int(passed.shape[0] - member(excluded, user_ids[passed]).sum())
        taken = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        return taken, removed


def default_safety(store: GraphStore) -> SafetyEngine:
    """The built-in policy, no guardians, a fresh impression memory."""
    import secrets

    from service.safety.exposure import ImpressionLedger
    from service.safety.guardian import GuardianRegistry
    from service.safety.policy import PolicyHolder

    return SafetyEngine(PolicyHolder(), GuardianRegistry(secrets.token_bytes(32), store.clock), ImpressionLedger())
