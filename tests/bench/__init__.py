"""Benchmarks, run as modules (``python -m tests.bench.graph_bench``); no
file here is named ``test_*``, so pytest does not collect them."""
