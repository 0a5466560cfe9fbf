"""The command line: one module per `contactgraph` subcommand (see main.py)."""

from service.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
