"""Candidate sources: each finds rows for a viewer and scores them."""

from service.pipeline.sources.contacts_of_contacts import ContactsOfContacts, RandomWalk
from service.pipeline.sources.embedding import EmbeddingNeighbours
from service.pipeline.sources.friends_of_friends import FriendsOfFriends
from service.pipeline.sources.inbound import FollowsYou, MessagedYou
from service.pipeline.sources.recent_contacts import RecentContacts

__all__ = [
           "ContactsOfContacts",
           "EmbeddingNeighbours",
           "FollowsYou",
           "FriendsOfFriends",
           "MessagedYou",
           "RandomWalk",
           "RecentContacts",
]
