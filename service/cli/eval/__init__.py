"""Offline evaluation of the suggestion pipeline against graph baselines on
real temporal data sets (``contactgraph eval``)."""

from service.cli.eval.harness import EvalConfig, run

__all__ = ["EvalConfig", "run"]
