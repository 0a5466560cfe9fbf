"""Contacts of contacts: two hops over messages and follows in the contact
graph, scored by strength-weighted Adamic–Adar (a tie counts by how much
both sides of it talk, a hub by how little it says about any one pair)."""

from __future__ import annotations

from dataclasses import dataclass

from graph.contacts import ContactGraph
from graph.retrieval import RetrievalConfig, contacts_of_contacts, random_walk
from service.pipeline.candidates import SourceResult
from service.pipeline.reasons import SuggestionReason


@dataclass(frozen=True)
class ContactsOfContacts:
    contacts: ContactGraph
    k: int = RetrievalConfig.two_hop_k
    name: str = "contacts_of_contacts"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, scores = contacts_of_contacts(self.contacts, viewer_row, self.k)
        return SourceResult(self.name, SuggestionReason.MUTUAL_FRIENDS, rows, scores)


@dataclass(frozen=True)
class RandomWalk:
    """A short strength-weighted random walk from the viewer (truncated
    personalised PageRank over the contact graph)."""

    contacts: ContactGraph
    k: int = RetrievalConfig.walk_k
    name: str = "random_walk"

    def __call__(self, viewer_row: int, now: float) -> SourceResult:
        rows, scores = random_walk(self.contacts, viewer_row, self.k)
        return SourceResult(self.name, SuggestionReason.SIMILAR_NETWORK, rows, scores)
