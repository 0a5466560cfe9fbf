"""The reason enums, re-exported where the pipeline's steps look for them."""

from service.safety.reasons import FilterReason, SuggestionReason

__all__ = ["FilterReason", "SuggestionReason"]
