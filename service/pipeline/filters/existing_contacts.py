"""People the viewer already messaged are not new contacts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph.store import GraphStore
from service.pipeline.candidates import Candidates
from service.pipeline.reasons import FilterReason
from service.safety.engine import member


@dataclass(frozen=True)
class ExistingContacts:
    """Removes candidates the viewer has an outgoing interaction with (the
    NEW_CONTACTS surface; the share sheet wants them)."""

    store: GraphStore
    name: str = "existing_contact"
    reason: FilterReason = FilterReason.EXISTING_CONTACT

    def __call__(self, viewer_row: int, candidates: Candidates) -> np.ndarray:
        return member(self.store.interactions.out(viewer_row)[0], candidates.rows)
