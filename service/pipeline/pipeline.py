"""The suggestion pipeline: viewer eligibility, then the surface's flow
(``flow.Flow``: sources -> pre-rank filters -> ranker -> safety filter and
take -> transforms; post steps once a page is answered). Plain Python over
``graph``; no gRPC here."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from graph.ann import VectorSearch
from graph.contacts import ContactGraph
from graph.model import Surface
from graph.ranking import RankingModel
from graph.retrieval import RetrievalConfig
from graph.store import GraphStore
from service.pipeline.filters.safety import SafetyFilterAndTake
from service.pipeline.flow import Flow, Ranked
from service.pipeline.flows import build_flows
from service.pipeline.ranker import Ranker, choose_ranker
from service.pipeline.reasons import SuggestionReason
from service.pipeline.steps import CandidateSource
from service.safety.engine import SafetyEngine

log = logging.getLogger(__name__)

__all__ = ["Pipeline", "Ranked", "default_safety"]


class Pipeline:
    """The flows of a snapshot's parts (``flows.build_flows``) over one
    store, search and safety engine. ``contacts``: the snapshot's contact
    graph, which adds the contacts-of-contacts and random-walk sources.
    ``ranker``: None picks one (``ranker.choose_ranker``: the linear blend
    here; ``Pipeline.of`` gives the learned one a model)."""

    def __init__(self, store: GraphStore, search: VectorSearch, ranker: Ranker | None = None,
                 max_candidates: int = 500, safety: SafetyEngine | None = None, *,
                 contacts: ContactGraph | None = None, retrieval: RetrievalConfig | None = None) -> None:
        self.store = store
        self.safety = safety or default_safety(store)
        self.search = search
        self.max_candidates = max_candidates
        self.flows: dict[Surface, Flow] = build_flows(
            store, search, self.safety, ranker or choose_ranker(None, None, search.vectors), contacts=contacts,
            retrieval=retrieval, max_candidates=max_candidates)

    @staticmethod
    def of(store: GraphStore, search: VectorSearch, contacts: ContactGraph | None,
           model: RankingModel | None, *, max_candidates: int = 500, safety: SafetyEngine | None = None,
           retrieval: RetrievalConfig | None = None) -> Pipeline:
        """The pipeline for a snapshot's parts, its ranker chosen by
        ``choose_ranker`` (learned when the model and its contact graph are
        there, linear otherwise). ``retrieval``'s bounds apply to the
        contact graph too (a view of the same arrays), so its sources and
        the ranker's features read the same capped reach."""
        if retrieval is not None and contacts is not None and contacts.bounds != retrieval.bounds:
            contacts = contacts.with_bounds(retrieval.bounds)
        return Pipeline(store, search, choose_ranker(model, contacts, search.vectors), max_candidates, safety,
                        contacts=contacts, retrieval=retrieval)

    def flow(self, surface: Surface) -> Flow:
        """The flow a surface runs (UNSPECIFIED: NEW_CONTACTS)."""
        return self.flows[Surface.NEW_CONTACTS if surface == Surface.UNSPECIFIED else surface]

    def sources_for(self, surface: Surface) -> tuple[CandidateSource, ...]:
        """The candidate sources a surface's flow draws on."""
        return self.flow(surface).sources

    @property
    def ranker(self) -> Ranker:
        """The ranker every flow uses."""
        return self.flows[Surface.NEW_CONTACTS].ranker

    @property
    def take(self) -> SafetyFilterAndTake:
        """The safety filter-and-take step the flows share."""
        return self.flows[Surface.NEW_CONTACTS].take

    def suggest(self, user_id: int, surface: Surface, now: float | None = None, *, limit: int | None = None,
                exclude: Sequence[int] = ()) -> Ranked:
        """The viewer's ranked, safety-filtered suggestions, best first (at
        most ``max_candidates``): an empty answer with the reason when the
        viewer may not get suggestions, else the surface's flow. ``limit``:
        stop once that many candidates not in ``exclude`` (external ids,
        e.g. the ones a page token says were shown) have passed; the answer
        then holds the head of the full answer, at least ``limit`` of them
        outside ``exclude`` unless the candidates ran out. None: filter them
        all."""
        now = self.store.clock.now() if now is None else now
        row = self.store.row(user_id)
        reason = self.safety.viewer_ineligibility(self.store, row)
        if reason is not None:
            return Ranked.empty(reason)
        facts = self.safety.viewer(self.store, row, now)
        return self.flow(surface).run(self.store, facts, now, limit=limit, exclude=exclude)

    def finish(self, user_id: int, surface: Surface, page_ids: list[int], reasons: list[list[SuggestionReason]],
               now: float) -> None:
        """The surface's post steps for a page that was answered."""
        self.flow(surface).finish(user_id, page_ids, reasons, now)


def default_safety(store: GraphStore) -> SafetyEngine:
    """The built-in policy, no guardians, a fresh impression memory."""
    import secrets

    from service.safety.exposure import ImpressionLedger
    from service.safety.guardian import GuardianRegistry
    from service.safety.policy import PolicyHolder

    return SafetyEngine(PolicyHolder(), GuardianRegistry(secrets.token_bytes(32), store.clock), ImpressionLedger())
