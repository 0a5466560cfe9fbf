"""Candidate sources: each finds rows for a viewer and scores them."""

from .contacts_of_contacts import ContactsOfContacts, RandomWalk
from .embedding import EmbeddingNeighbours
from .friends_of_friends import FriendsOfFriends
from .inbound import FollowsYou, MessagedYou
from .recent_contacts import RecentContacts

__all__ = ["ContactsOfContacts", "EmbeddingNeighbours", "FriendsOfFriends", "FollowsYou", "MessagedYou",
           "RandomWalk", "RecentContacts"]
