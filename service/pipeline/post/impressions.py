"""Impressions: what was shown to whom, for the exposure and fatigue rules."""

from __future__ import annotations

from dataclasses import dataclass

from service.pipeline.reasons import SuggestionReason
from service.safety.engine import SafetyEngine


@dataclass(frozen=True)
class RecordImpressions:
    """Records each suggestion on the page with its reasons in the safety
    engine's impression ledger (read by the exposure caps and fatigue)."""

    safety: SafetyEngine
    name: str = "impressions"

    def __call__(self, viewer_id: int, page_ids: list[int], reasons: list[list[SuggestionReason]],
                 now: float) -> None:
        self.safety.ledger.record(viewer_id, page_ids, [[r.value for r in rs] for rs in reasons], now)
