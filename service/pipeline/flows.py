"""The flows per surface, as data: which sources, filters, ranker,
transforms and post steps each surface runs (see ``flow.Flow``)."""

from __future__ import annotations

from graph.ann import VectorSearch
from graph.contacts import ContactGraph
from graph.model import Surface
from graph.retrieval import RetrievalConfig
from graph.store import GraphStore
from service.pipeline.filters.existing_contacts import ExistingContacts
from service.pipeline.filters.safety import SafetyFilterAndTake
from service.pipeline.flow import Flow
from service.pipeline.post import RecordImpressions
from service.pipeline.pre_rank import LinearPreRank
from service.pipeline.ranker import Ranker
from service.pipeline.sources import (
    ContactsOfContacts,
    EmbeddingNeighbours,
    FollowsYou,
    FriendsOfFriends,
    MessagedYou,
    RandomWalk,
    RecentContacts,
)
from service.pipeline.steps import CandidateSource
from service.pipeline.transforms import MutualFriends, Reasons
from service.safety.engine import SafetyEngine


def new_contact_sources(store: GraphStore, search: VectorSearch, contacts: ContactGraph | None,
                        retrieval: RetrievalConfig) -> tuple[CandidateSource, ...]:
    """People the viewer may not know yet: embedding neighbours, friends of
    friends, unanswered senders, followers; with a contact graph also two
    hops over messages and a short random walk."""
    r = retrieval
    sources: list[CandidateSource] = [
        EmbeddingNeighbours(search, r.embedding_k), FriendsOfFriends(store, r.friends_of_friends_k, bounds=r.bounds),
        MessagedYou(store, r.inbound_k), FollowsYou(store, r.follower_k, pool=r.bounds.source_pool),
    ]
    if contacts is not None:
        sources += [ContactsOfContacts(contacts, r.two_hop_k), RandomWalk(contacts, r.walk_k)]
    return tuple(sources)


def build_flows(store: GraphStore, search: VectorSearch, safety: SafetyEngine, ranker: Ranker, *,
                contacts: ContactGraph | None = None, retrieval: RetrievalConfig | None = None,
                max_candidates: int = 500) -> dict[Surface, Flow]:
    """NEW_CONTACTS: new people only (existing contacts removed before
    ranking). SHARE_SHEET: the viewer's recent contacts first, then the same
    sources as NEW_CONTACTS. Both: the linear pre-rank keeps at most
    ``retrieval.bounds.pre_rank_keep`` for the ranker; safety filter-and-take, mutual friends
    then reasons, impressions recorded."""
    r = retrieval or RetrievalConfig()
    found = new_contact_sources(store, search, contacts, r)
    take = SafetyFilterAndTake(safety, store, max_candidates)
    transforms = (MutualFriends(store, safety, r.friends_of_friends_k), Reasons())
    post = (RecordImpressions(safety),)
    pre_rank = LinearPreRank(r.bounds.pre_rank_keep)
    return {
        Surface.NEW_CONTACTS: Flow(Surface.NEW_CONTACTS, found, (ExistingContacts(store),), ranker, take,
                                   transforms, post, pre_rank),
        Surface.SHARE_SHEET: Flow(Surface.SHARE_SHEET, (RecentContacts(store), *found), (), ranker, take,
                                  transforms, post, pre_rank),
    }
