"""Rankers: the learned one (a model over pair features, trained offline and
shipped in the snapshot) and the linear blend it falls back to.

Deterministic: ties go to the lower user id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from graph.contacts import ContactGraph
from graph.features import pair_features
from graph.model import Surface
from graph.ranking import RankingModel

from .candidates import Candidates


def order_by_score(scores: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
    """Indices by score descending, then user id ascending."""
    return np.lexsort((user_ids, -scores))


class Ranker(Protocol):
    name: str

    def rank_scores(self, viewer_row: int, candidates: Candidates, surface: Surface, now: float) -> np.ndarray:
        """One score per candidate (float64), higher first."""
        ...

    def order(self, scores: np.ndarray, user_ids: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class LinearRanker:
    mutual_friends: float = 1.0
    contacts_of_contacts: float = 1.0
    embedding: float = 1.5
    messaged_you: float = 2.0
    follows_you: float = 0.5
    recent_contact: float = 3.0
    # On the share sheet existing contacts come first, then new ones.
    existing_contact_bonus: float = 100.0
    name: str = "linear"

    def scores(self, candidates: Candidates, surface: Surface) -> np.ndarray:
        f = candidates.features
        zero = np.zeros(len(candidates))
        score = (
            self.mutual_friends * np.log1p(f.get("friends_of_friends", zero))
            + self.contacts_of_contacts * np.log1p(f.get("contacts_of_contacts", zero))
            + self.embedding * f.get("embedding", zero)
            + self.messaged_you * np.log1p(f.get("messaged_you", zero))
            + self.follows_you * f.get("follows_you", zero)
        )
        if surface == Surface.SHARE_SHEET:
            contact = candidates.found_by.get("recent_contacts", np.zeros(len(candidates), bool))
            score = score + self.recent_contact * np.log1p(f.get("recent_contacts", zero))
            score = score + np.where(contact, self.existing_contact_bonus, 0.0)
        return score

    def rank_scores(self, viewer_row: int, candidates: Candidates, surface: Surface, now: float) -> np.ndarray:
        return self.scores(candidates, surface)

    @staticmethod
    def order(scores: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
        return order_by_score(scores, user_ids)


@dataclass(frozen=True)
class LearnedRanker:
    """NEW_CONTACTS: the model's log-odds over ``graph.features``. The share
    sheet keeps the linear blend (existing contacts first), which the model
    was not trained for."""

    model: RankingModel
    contacts: ContactGraph
    vectors: np.ndarray  # (n_rows, dim) float32, the snapshot's embeddings
    fallback: LinearRanker = field(default_factory=LinearRanker)
    name: str = "learned"

    def rank_scores(self, viewer_row: int, candidates: Candidates, surface: Surface, now: float) -> np.ndarray:
        if surface != Surface.NEW_CONTACTS:
            return self.fallback.scores(candidates, surface)
        x = pair_features(self.contacts, self.vectors, viewer_row, candidates.rows, now)
        return self.model.score(x)

    @staticmethod
    def order(scores: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
        return order_by_score(scores, user_ids)
