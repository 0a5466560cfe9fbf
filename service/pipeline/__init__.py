"""candidate sources -> safety filters -> ranker -> page."""

from service.pipeline.pipeline import Pipeline, Ranked

__all__ = ["Pipeline", "Ranked"]
