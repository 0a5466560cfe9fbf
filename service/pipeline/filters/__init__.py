"""Filters: pre-rank filters (``existing_contacts``) and the safety
filter-and-take step (``safety``), which runs the rules of
``service.safety`` (one implementation for suggestions and the send path)."""

from service.pipeline.filters.existing_contacts import ExistingContacts
from service.pipeline.filters.safety import SafetyFilterAndTake

__all__ = ["ExistingContacts", "SafetyFilterAndTake"]
