"""Candidate sources: each finds rows for a viewer and scores them."""

from .embedding import EmbeddingNeighbours
from .friends_of_friends import FriendsOfFriends
from .inbound import FollowsYou, MessagedYou
from .recent_contacts import RecentContacts

__all__ = ["EmbeddingNeighbours", "FriendsOfFriends", "FollowsYou", "MessagedYou", "RecentContacts"]
