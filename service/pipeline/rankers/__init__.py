"""Ranking stages before the ranker proper (the light ranker of a light-
then-heavy pair)."""

from service.pipeline.rankers.pre_rank import LinearPreRank

__all__ = ["LinearPreRank"]
