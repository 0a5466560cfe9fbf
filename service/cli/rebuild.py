"""`contactgraph rebuild`: event logs to a snapshot directory, with a reject file."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tabulate import tabulate

from service.cli.exit_codes import ExitCode, epilog
from service.cli.output import add_json_flag, print_json

if TYPE_CHECKING:
    from graph.eventlog import RejectedLine
    from graph.rebuild import RebuildReport


def _report(report: object) -> RebuildReport:
    from graph.rebuild import RebuildReport

    assert isinstance(report, RebuildReport)
    return report


def _phases(report: RebuildReport) -> list[tuple[str, float]]:
    order = {phase: i for i, phase in enumerate(_PHASES)}
    return sorted(report.timings.items(), key=lambda item: order.get(item[0], len(order) - 1))


def report_document(report: object) -> dict[str, Any]:
    """The rebuild's report as the JSON document --json prints."""
    r = _report(report)
    return {"snapshot_id": r.manifest["snapshot_id"], "events": r.events, "counts": dict(r.manifest["counts"]),
            "inputs": [{"path": i.path, "read": i.read, "rejected": i.rejected, "kept": i.kept,
                        "seconds": round(i.seconds, 3)} for i in r.inputs],
            "rejected": r.rejected, "seconds": {phase: round(s, 3) for phase, s in _phases(r)}}


def print_report(report: object) -> None:
    r = _report(report)
    m = r.manifest
    if r.inputs:
        rows: list[list[object]] = [[i.path, i.read, i.rejected, i.kept, i.seconds] for i in r.inputs]
        if len(r.inputs) > 1:
            read = sum(i.read for i in r.inputs)
            rows.append(["all inputs", read, r.rejected, read - r.rejected, sum(i.seconds for i in r.inputs)])
        print(tabulate(rows, ["input", "read", "rejected", "kept", "seconds"], intfmt=",", floatfmt=".2f",
                       disable_numparse=[0]))
    print(f"snapshot {m['snapshot_id']}: {r.events:,} events, " +
          ", ".join(f"{k} {v}" for k, v in m["counts"].items()))
    print(tabulate(_phases(r), ["phase", "seconds"], floatfmt=".2f"))


# The rebuild's phases in the order they run; "total" last.
_PHASES = ("read", "fold", "embed", "index", "contacts", "ranker", "write", "total")


class _RejectFile:
    """Skipped lines, kept in a temporary file until the rebuild succeeds
    (a failed rebuild leaves nothing behind), then moved to ``path``.
    Format: see the --reject-file help."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._tmp: IO[str] | None = None
        self._source: str | None = None

    def add(self, rejected: RejectedLine) -> None:
        if self._tmp is None:
            # Open across add() calls until keep() or discard() closes it,
            # so no with-block.
            self._tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 (see above)
                "w", encoding="utf-8", newline="", suffix=".rejects", delete=False)
            self._tmp.write(_REJECT_FILE_PREAMBLE)
        out = self._tmp
        error = rejected.error
        if error.path != self._source:
            self._source = error.path
            out.write(f"## {error.path}\n")
            if rejected.header:
                out.write(rejected.header + "\n")
        out.write(f"# {error}\n{rejected.text}\n")
        self.count += 1

    def keep(self) -> None:
        if self._tmp is None:
            return
        self._tmp.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self._tmp.name, self.path)
        self._tmp = None

    def discard(self) -> None:
        if self._tmp is None:
            return
        self._tmp.close()
        os.unlink(self._tmp.name)
        self._tmp = None


_REJECT_FILE_PREAMBLE = """\
# Lines `contactgraph rebuild` skipped as bad. One section per input: "## FILE",
# that input's header line (none for JSON lines), then each bad line as read
# after a "# FILE:LINE: reason" line (Parquet rows come as edge CSV lines).
# To re-feed a section: fix its lines, drop every line starting with "#"
# (grep -v '^#') and pass the result, named .csv or .jsonl, with --events.
"""


_NEXT_PHASE = {"read": "training the ranker on an inner split", "ranker": "folding the events",
               "fold": "embedding", "embed": "indexing", "index": "building the contact graph",
               "contacts": "writing the snapshot"}


def _print_phase(phase: str, seconds: float) -> None:
    """One line per finished phase on stderr, saying what comes next: a
    rebuild of millions of events runs for minutes."""
    following = _NEXT_PHASE.get(phase)
    print(f"contactgraph rebuild: {phase} done in {seconds:.1f}s" + (f"; {following} ..." if following else ""),
          file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from graph.errors import EventLogError, GraphError, TooManyBadLines, WalError
    from graph.eventlog import BadLines
    from graph.rebuild import rebuild

    if args.max_errors < 0:
        print("contactgraph rebuild: --max-errors must be 0 or more", file=sys.stderr)
        return ExitCode.USAGE
    out = Path(args.out)
    rejects = _RejectFile(Path(args.reject_file) if args.reject_file else out.with_name(out.name + ".rejects"))

    def on_reject(rejected: RejectedLine) -> None:
        tqdm.write(str(rejected.error), file=sys.stderr)  # above any progress bar
        rejects.add(rejected)

    ledger = None
    if args.ledger:
        from graph.snapshot import load_ledger

        try:
            ledger = load_ledger(Path(args.ledger))
        except GraphError as err:
            print(f"contactgraph rebuild: --ledger: {err}", file=sys.stderr)
            return ExitCode.BAD_INPUT
    try:
        report = rebuild([Path(p) for p in args.events], out, bad_lines=BadLines(args.max_errors, on_reject),
                         progress=True, ledger=ledger, on_phase=_print_phase)
    except TooManyBadLines as err:
        rejects.discard()
        print(f"contactgraph rebuild: {err}", file=sys.stderr)
        print(f"contactgraph rebuild: more than --max-errors {args.max_errors} bad lines; nothing written",
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    except EventLogError as err:
        rejects.discard()
        print(f"contactgraph rebuild: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except (GraphError, OSError) as err:
        rejects.discard()
        print(f"contactgraph rebuild: {err}", file=sys.stderr)
        missing_input = isinstance(err, FileNotFoundError) and str(err.filename) in args.events
        return ExitCode.BAD_INPUT if isinstance(err, WalError) or missing_input else ExitCode.FAILURE
    except BaseException:
        rejects.discard()
        raise
    try:
        rejects.keep()
    except OSError as err:
        print(f"contactgraph rebuild: snapshot written, but the reject file could not be: {err}", file=sys.stderr)
        return ExitCode.FAILURE
    if args.json:
        print_json({**report_document(report), "reject_file": str(rejects.path) if rejects.count else None})
        return ExitCode.OK
    print_report(report)
    if rejects.count:
        print(f"{rejects.count} bad line(s) skipped, written to {rejects.path}")
    return ExitCode.OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rebuild", help="turn event logs into a snapshot directory", epilog=epilog({
        ExitCode.BAD_INPUT: "more bad lines than --max-errors, a bad header, an unreadable event log or WAL, "
                            "a bad --ledger; nothing written"}))
    p.add_argument("--events", nargs="+", required=True, metavar="PATH",
                   help="JSONL, CSV (.gz ok) or Parquet event logs and WAL segments (.wal files or a WAL "
                        "directory), applied in the order given; an event id seen before is skipped")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--max-errors", type=int, default=0, metavar="N",
                   help="skip up to N bad lines (all inputs together), each reported on stderr as "
                        "FILE:LINE: reason (Parquet: FILE:row N: reason) and written to the reject file; "
                        "one more stops the rebuild with exit code 3 and nothing written (no snapshot, no "
                        "reject file). Default 0: the first bad line stops it. A bad header or an unreadable "
                        "file always stops it")
    p.add_argument("--ledger", metavar="PATH",
                   help="erasure ledger to apply: an earlier snapshot directory or a ledger file (its "
                        "erasure.key beside it); events naming those users are dropped, so old raw logs "
                        "cannot bring an erased user back")
    p.add_argument("--reject-file", metavar="PATH",
                   help="where skipped lines go; default OUT.rejects beside the snapshot directory; written "
                        "only when a line was skipped. Plain text, one section per input: '## FILE', that "
                        "input's header line, then each bad line as read after a '# FILE:LINE: reason' line "
                        "(Parquet rows as edge CSV lines). To re-feed a section, fix its lines, drop the "
                        "lines starting with '#' (grep -v '^#') and pass it, named .csv or .jsonl, with --events")
    add_json_flag(p)
    p.set_defaults(func=run)
