"""A simple linear ranker over source scores and graph features.

Deterministic: ties go to the lower user id. The learned ranker replaces
this one in its own issue."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph.model import Surface

from .candidates import Candidates


@dataclass(frozen=True)
class LinearRanker:
    mutual_friends: float = 1.0
    embedding: float = 1.5
    messaged_you: float = 2.0
    follows_you: float = 0.5
    recent_contact: float = 3.0
    # On the share sheet existing contacts come first, then new ones.
    existing_contact_bonus: float = 100.0

    def scores(self, candidates: Candidates, surface: Surface) -> np.ndarray:
        f = candidates.features
        zero = np.zeros(len(candidates))
        score = (
            self.mutual_friends * np.log1p(f.get("friends_of_friends", zero))
            + self.embedding * f.get("embedding", zero)
            + self.messaged_you * np.log1p(f.get("messaged_you", zero))
            + self.follows_you * f.get("follows_you", zero)
        )
        if surface == Surface.SHARE_SHEET:
            contact = candidates.found_by.get("recent_contacts", np.zeros(len(candidates), bool))
            score = score + self.recent_contact * np.log1p(f.get("recent_contacts", zero))
            score = score + np.where(contact, self.existing_contact_bonus, 0.0)
        return score

    @staticmethod
    def order(scores: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
        """Indices by score descending, then user id ascending."""
        return np.lexsort((user_ids, -scores))
