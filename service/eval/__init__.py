"""Offline evaluation of the suggestion pipeline against graph baselines on
real temporal data sets (``contactgraph eval``)."""

from .harness import EvalConfig, run

__all__ = ["EvalConfig", "run"]
