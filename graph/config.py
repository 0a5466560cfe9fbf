"""Graph configuration: decay half-life, interaction weights, clock skew."""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import DEFAULT_MAX_FUTURE_S
from .model import InteractionType


def _default_weights() -> dict[InteractionType, float]:
    return {
        InteractionType.MESSAGE: 1.0,
        InteractionType.SHARE: 0.6,
        InteractionType.COMMENT: 0.4,
        InteractionType.MENTION: 0.4,
        InteractionType.LIKE: 0.1,
    }


@dataclass(frozen=True)
class GraphConfig:
    # Interaction strength halves every half_life_s seconds without contact.
    half_life_s: float = 14 * 86400.0
    weights: dict[InteractionType, float] = field(default_factory=_default_weights)
    max_future_s: float = DEFAULT_MAX_FUTURE_S

    def __post_init__(self) -> None:
        if self.half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        missing = set(InteractionType) - {InteractionType.UNSPECIFIED} - set(self.weights)
        if missing:
            raise ValueError(f"weights missing for {sorted(m.name for m in missing)}")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("interaction weights must not be negative")

    def weight_of(self, kind: int) -> float:
        return self.weights[InteractionType(kind)]
