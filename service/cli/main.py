"""`contactgraph`: one module per subcommand; this one assembles the parser."""

from __future__ import annotations

import argparse
import sys

from service.cli import demo, evaluate, policy, probe_command, rebuild, serve, snapshot, wal


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contactgraph", description="Contact suggestions, safe for teenagers.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (serve, policy, rebuild, wal, demo, evaluate, snapshot, probe_command):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
