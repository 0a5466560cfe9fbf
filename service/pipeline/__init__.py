"""candidate sources -> safety filters -> ranker -> page."""

from .pipeline import Pipeline, Ranked, Viewer

__all__ = ["Pipeline", "Ranked", "Viewer"]
