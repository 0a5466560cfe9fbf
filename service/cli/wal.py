"""`contactgraph wal`: inspect or compact a write-ahead log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    print(f"removed {len(done.removed)} segment(s) wholly at or below watermark {watermark}; "
          f"{len(kept)} kept")
    for path in done.removed:
        print(f"  removed {path.name}")
    for old, new in done.rewritten:
        print(f"  rewrote {old.name} as {new.name}")
    if ledger:
        print(f"{len(ledger)} erased user(s) in the snapshot's ledger: {done.redacted} logged event(s) redacted")
    if done.pending:
        print(f"{done.pending} erasure(s) after the watermark stay in the log until a newer snapshot covers them")
    for path in done.unscrubbed:
        print(f"warning: {path.name} names erased users but a server is writing to it; compact again once it "
              "has moved on to a new segment", file=sys.stderr)
    journal = Path(args.guardian_journal) if args.guardian_journal else data_dir / "guardian" / "journal.jsonl"
    if ledger:
        changed = scrub_journal(journal, ledger.subset)
        if changed is None:
            print(f"{journal}: open in a running server, which scrubs it itself")
        elif changed:
            print(f"{journal}: {changed} record(s) of erased users dropped or changed")
        for path in snapshots_naming(data_dir, ledger, keep=snapshot):
            remove_snapshot(path)
            print(f"removed snapshot directory {path} (it holds erased users' ids)")
    return 0


def run(args: argparse.Namespace) -> int:
    from graph.errors import GraphError, SnapshotError, WalError
    from graph.wal_format import WalReader, list_segments

    try:
        if args.wal_command == "compact":
            return _compact(args)
        if args.wal_command == "repair":
            from service.durability.wal_repair import repair_log

            wal_dir = Path(args.wal_dir) if args.wal_dir else Path(args.data_dir) / "wal"
            print("\n".join(repair_log(wal_dir).lines()))
            return 0
        segments = list_segments(Path(args.wal_dir))
        if not segments:
            print(f"{args.wal_dir}: no WAL segments")
            return 0
        reader = WalReader(Path(args.wal_dir), segments[0].first_sequence - 1)
        events = sum(len(batch.events) for batch in reader)
        print(f"{args.wal_dir}: {len(segments)} segment(s), {reader.records} record(s), {events} event(s), "
              f"sequences {segments[0].first_sequence}..{reader.last_sequence}")
        for segment in segments:
            print(f"  {segment.path.name}  {segment.path.stat().st_size} bytes")
        if reader.torn is not None:
            print(f"torn tail: {reader.torn.bad_bytes} bytes at offset {reader.torn.offset} of the newest segment "
                  f"({reader.torn.reason}); the server cuts it off when it starts")
        return 0
    except (SnapshotError, WalError, GraphError, OSError) as err:
        print(f"contactgraph wal {args.wal_command}: {err}", file=sys.stderr)
        return 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("wal", help="inspect or compact a write-ahead log")
    wal_sub = p.add_subparsers(dest="wal_command", required=True)
    q = wal_sub.add_parser("compact", help="remove segments wholly covered by a snapshot, and every trace of "
                                           "the users its erasure ledger holds")
    q.add_argument("--wal-dir", required=True, metavar="DIR")
    q.add_argument("--snapshot", required=True, metavar="DIR",
                   help="a verified snapshot; its watermark and erasure ledger decide")
    q.add_argument("--data-dir", metavar="DIR",
                   help="where older snapshot directories and the guardian journal live; default: the snapshot's "
                        "parent")
    q.add_argument("--guardian-journal", metavar="FILE", help="default: DATA_DIR/guardian/journal.jsonl")
    q = wal_sub.add_parser("repair", help="set damaged segments aside and rewrite them with every intact record, "
                                          "reporting what was lost (the server refuses to start until then)")
    where = q.add_mutually_exclusive_group(required=True)
    where.add_argument("--wal-dir", metavar="DIR")
    where.add_argument("--data-dir", metavar="DIR", help="the server's --data-dir: its log is DATA_DIR/wal")
    q = wal_sub.add_parser("info", help="segments, records and sequence range")
    q.add_argument("wal_dir", metavar="DIR")
    p.set_defaults(func=run)
