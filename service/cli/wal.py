"""`contactgraph wal`: inspect or compact a write-ahead log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tabulate import tabulate

from service.cli.exit_codes import ExitCode, epilog
from service.cli.output import add_json_flag, note, print_json


def _compact(args: argparse.Namespace) -> int:
    """Compact the log against a snapshot and remove what its erasure
    ledger says must go: the log's records of erased users, their guardian
    records, older snapshot directories that still hold their ids."""
    from graph.snapshot import load_ledger, remove_snapshot, snapshots_naming, verify
    from graph.wal_format import list_segments
    from service.durability.wal_compact import compact_log
    from service.safety.guardian import scrub_journal

    snapshot = Path(args.snapshot)
    watermark = int(verify(snapshot)["watermark"])
    ledger = load_ledger(snapshot)
    data_dir = Path(args.data_dir) if args.data_dir else snapshot.resolve().parent
    done = compact_log(Path(args.wal_dir), watermark, ledger)
    kept = list_segments(Path(args.wal_dir))
    document: dict[str, Any] = {
        "watermark": watermark, "removed": [p.name for p in done.removed], "kept": len(kept),
        "rewritten": [{"old": old.name, "new": new.name} for old, new in done.rewritten],
        "erased_users": len(ledger) if ledger else 0, "redacted": done.redacted, "pending": done.pending,
        "unscrubbed": [p.name for p in done.unscrubbed], "guardian_journal": None, "removed_snapshots": []}
    note(args, f"removed {len(done.removed)} segment(s) wholly at or below watermark {watermark}; "
               f"{len(kept)} kept")
    for path in done.removed:
        note(args, f"  removed {path.name}")
    for old, new in done.rewritten:
        note(args, f"  rewrote {old.name} as {new.name}")
    if ledger:
        note(args, f"{len(ledger)} erased user(s) in the snapshot's ledger: {done.redacted} logged event(s) "
                   "redacted")
    if done.pending:
        note(args, f"{done.pending} erasure(s) after the watermark stay in the log until a newer snapshot covers "
                   "them")
    for path in done.unscrubbed:
        print(f"warning: {path.name} names erased users but a server is writing to it; compact again once it "
              "has moved on to a new segment", file=sys.stderr)
    journal = Path(args.guardian_journal) if args.guardian_journal else data_dir / "guardian" / "journal.jsonl"
    if ledger:
        changed = scrub_journal(journal, ledger.subset)
        # changed None: a running server holds the journal and scrubs it.
        document["guardian_journal"] = {"path": str(journal), "in_use": changed is None, "changed": changed or 0}
        if changed is None:
            note(args, f"{journal}: open in a running server, which scrubs it itself")
        elif changed:
            note(args, f"{journal}: {changed} record(s) of erased users dropped or changed")
        for path in snapshots_naming(data_dir, ledger, keep=snapshot):
            remove_snapshot(path)
            document["removed_snapshots"].append(str(path))
            note(args, f"removed snapshot directory {path} (it holds erased users' ids)")
    if args.json:
        print_json(document)
    return ExitCode.OK


def _repair(args: argparse.Namespace) -> int:
    from service.durability.wal_repair import repair_log

    wal_dir = Path(args.wal_dir) if args.wal_dir else Path(args.data_dir) / "wal"
    done = repair_log(wal_dir)
    if not args.json:
        print("\n".join(done.lines()))
        return ExitCode.OK
    print_json({
        "wal_dir": str(wal_dir), "changed": bool(done.rewritten),
        "rewritten": [{"segment": path.name, "original": aside.name} for path, aside in done.rewritten],
        "kept": done.kept, "mended": done.mended, "lost_events": done.lost_events,
        "losses": [{"segment": loss.segment.name, "start": loss.start, "end": loss.end, "reason": loss.reason,
                    "records": loss.records,
                    "sequences": list(loss.sequences) if loss.sequences is not None else None}
                   for loss in done.losses]})
    return ExitCode.OK


def _info(args: argparse.Namespace) -> int:
    from graph.wal_format import WalReader, list_segments

    if not Path(args.wal_dir).is_dir():
        # A typo, not an empty log.
        print(f"contactgraph wal info: {args.wal_dir}: no such directory", file=sys.stderr)
        return ExitCode.BAD_INPUT
    segments = list_segments(Path(args.wal_dir))
    if not segments:
        if args.json:
            print_json({"wal_dir": args.wal_dir, "segments": [], "records": 0, "events": 0, "first_sequence": None,
                        "last_sequence": None, "torn": None})
        else:
            print(f"{args.wal_dir}: no WAL segments")
        return ExitCode.OK
    reader = WalReader(Path(args.wal_dir), segments[0].first_sequence - 1)
    events = sum(len(batch.events) for batch in reader)
    torn = reader.torn
    if args.json:
        print_json({
            "wal_dir": args.wal_dir, "records": reader.records, "events": events,
            "first_sequence": segments[0].first_sequence, "last_sequence": reader.last_sequence,
            "segments": [{"name": s.path.name, "first_sequence": s.first_sequence, "bytes": s.path.stat().st_size}
                         for s in segments],
            "torn": None if torn is None else {"offset": torn.offset, "bytes": torn.bad_bytes,
                                               "reason": torn.reason}})
        return ExitCode.OK
    print(f"{args.wal_dir}: {len(segments)} segment(s), {reader.records} record(s), {events} event(s), "
          f"sequences {segments[0].first_sequence}..{reader.last_sequence}")
    print(tabulate([[s.path.name, s.first_sequence, s.path.stat().st_size] for s in segments],
                   ["segment", "first sequence", "bytes"], disable_numparse=[0]))
    if torn is not None:
        print(f"torn tail: {torn.bad_bytes} bytes at offset {torn.offset} of the newest segment "
              f"({torn.reason}); the server cuts it off when it starts")
    return ExitCode.OK


def run(args: argparse.Namespace) -> int:
    from graph.errors import GraphError, SnapshotError, WalError

    try:
        if args.wal_command == "compact":
            return _compact(args)
        if args.wal_command == "repair":
            return _repair(args)
        return _info(args)
    except (SnapshotError, WalError) as err:
        print(f"contactgraph wal {args.wal_command}: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except (GraphError, OSError) as err:
        print(f"contactgraph wal {args.wal_command}: {err}", file=sys.stderr)
        return ExitCode.FAILURE


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bad_log = {ExitCode.BAD_INPUT: "no such directory, or a WAL that cannot be read (damage other than a torn "
                                   "tail: see wal repair)"}
    p = sub.add_parser("wal", help="inspect or compact a write-ahead log", epilog=epilog(
        {ExitCode.BAD_INPUT: "a WAL that cannot be read, or (compact) a --snapshot that does not verify"}))
    wal_sub = p.add_subparsers(dest="wal_command", required=True)
    q = wal_sub.add_parser("compact", help="remove segments wholly covered by a snapshot, and every trace of "
                                           "the users its erasure ledger holds",
                           epilog=epilog({ExitCode.BAD_INPUT: "a --snapshot that does not verify or a WAL that "
                                                              "cannot be read"}))
    q.add_argument("--wal-dir", required=True, metavar="DIR")
    q.add_argument("--snapshot", required=True, metavar="DIR",
                   help="a verified snapshot; its watermark and erasure ledger decide")
    q.add_argument("--data-dir", metavar="DIR",
                   help="where older snapshot directories and the guardian journal live; default: the snapshot's "
                        "parent")
    q.add_argument("--guardian-journal", metavar="FILE", help="default: DATA_DIR/guardian/journal.jsonl")
    add_json_flag(q)
    q = wal_sub.add_parser("repair", help="set damaged segments aside and rewrite them with every intact record, "
                                          "reporting what was lost (the server refuses to start until then)",
                           epilog=epilog(bad_log))
    where = q.add_mutually_exclusive_group(required=True)
    where.add_argument("--wal-dir", metavar="DIR")
    where.add_argument("--data-dir", metavar="DIR", help="the server's --data-dir: its log is DATA_DIR/wal")
    add_json_flag(q)
    q = wal_sub.add_parser("info", help="segments, records and sequence range", epilog=epilog(bad_log))
    q.add_argument("wal_dir", metavar="DIR")
    add_json_flag(q)
    p.set_defaults(func=run)
