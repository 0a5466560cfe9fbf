"""What the commands print: ``--json`` (one JSON document on stdout) or text."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="machine-readable output: one JSON document on stdout (notes go to stderr)")


def print_json(document: Any) -> None:
    """``document`` as indented JSON with sorted keys, then a newline."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")


def note(args: argparse.Namespace, text: str) -> None:
    """A line for the person at the terminal: stdout, or stderr under
    --json so that stdout holds the JSON document alone."""
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout)
