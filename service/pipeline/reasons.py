"""The reason enums, re-exported where the pipeline's steps look for them."""

from ..safety.reasons import FilterReason, SuggestionReason

__all__ = ["FilterReason", "SuggestionReason"]
