"""candidate sources -> safety filters -> ranker -> page."""

from .pipeline import Pipeline, Ranked

__all__ = ["Pipeline", "Ranked"]
