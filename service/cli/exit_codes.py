"""The exit codes of every `contactgraph` command, defined once.

A script tells from the code alone whether to fix its command line (2),
fix the data it fed in (3), wait for the server (4) or page someone (5);
the message on stderr says the rest. 2 is argparse's own code, so it is
kept for usage errors only."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # anything else: I/O errors, an error answer from the server, no successful call
    USAGE = 2  # the command line: argparse's own errors, flags that do not go together, bad flag values
    BAD_INPUT = 3  # the data given is bad: event logs, policy, snapshot, WAL, ledger or user id files
    UNREACHABLE = 4  # probe: no server answers at the target (gRPC UNAVAILABLE)
    NOT_SERVING = 5  # probe health: the server or a service reports other than SERVING


_MEANING = {
    ExitCode.OK: "ok",
    ExitCode.FAILURE: "failure",
    ExitCode.USAGE: "usage error",
    ExitCode.BAD_INPUT: "bad input data",
    ExitCode.UNREACHABLE: "server unreachable",
    ExitCode.NOT_SERVING: "server or a service NOT_SERVING",
}


def epilog(detail: Mapping[ExitCode, str] | None = None) -> str:
    """The exit codes paragraph of a subcommand's --help: 0, 1, 2 always,
    plus the codes in ``detail``, each with what it means for that command."""
    detail = dict(detail or {})
    codes = sorted({ExitCode.OK, ExitCode.FAILURE, ExitCode.USAGE, *detail})
    parts = [f"{int(c)} {_MEANING[c]}" + (f" ({detail[c]})" if c in detail else "") for c in codes]
    return "exit codes: " + ", ".join(parts) + "."
