"""Suggestions as declared flows (``flow.Flow``, ``flows.build_flows``):
candidate sources (``sources/``) -> pre-rank filters (``filters/``) ->
ranker (``ranker.py``) -> safety filter and take (``filters/safety.py``) ->
transforms (``transforms/``) -> post steps (``post/``)."""

from service.pipeline.flow import Flow, Ranked
from service.pipeline.pipeline import Pipeline

__all__ = ["Flow", "Pipeline", "Ranked"]
