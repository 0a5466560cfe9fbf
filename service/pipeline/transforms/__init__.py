"""Transforms: what is added to the kept candidates after safety."""

from service.pipeline.transforms.social_proof import MutualFriends, Reasons

__all__ = ["MutualFriends", "Reasons"]
