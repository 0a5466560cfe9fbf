"""`contactgraph demo`: build the demo snapshot from a seeded synthetic network."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from service.cli.exit_codes import ExitCode, epilog
from service.cli.output import add_json_flag, note, print_json
from service.cli.rebuild import print_report, report_document


def run(args: argparse.Namespace) -> int:
    from graph.errors import SnapshotError
    from graph.rebuild import rebuild
    from graph.snapshot import read_manifest
    from graph.synthetic import demo_spec, generate_network, write_demo_logs

    out = Path(args.out)
    snapshot = out / "snapshot"
    document: dict[str, Any] = {"snapshot": str(snapshot), "built": False, "removed_wal": None, "report": None}
    if not args.force:
        try:
            document["snapshot_id"] = read_manifest(snapshot)["snapshot_id"]
            if args.json:
                print_json(document)
            else:
                print(f"demo snapshot already built: {snapshot} (use --force to rebuild)")
            return ExitCode.OK
        except SnapshotError:
            pass  # missing or of an older format: build it
    out.mkdir(parents=True, exist_ok=True)
    spec = demo_spec()
    note(args, f"generating a synthetic network of {spec.n_users} users (seed {spec.seed}) in {out}")
    paths = write_demo_logs(generate_network(spec), out / "logs")
    report = rebuild(paths, snapshot)
    stale_wal = out / "wal"
    if stale_wal.exists():
        # The new snapshot starts a new history: the old demo log no longer
        # continues it and would be refused at start-up.
        shutil.rmtree(stale_wal)
        document["removed_wal"] = str(stale_wal)
        note(args, f"removed the previous demo's write-ahead log {stale_wal}")
    if args.json:
        report_doc = report_document(report)
        print_json({**document, "built": True, "snapshot_id": report_doc["snapshot_id"], "report": report_doc})
        return ExitCode.OK
    print_report(report)
    print("\nwhen the server is up, in another terminal:\n"
          "  .venv/bin/contactgraph probe suggest 1\n"
          "  .venv/bin/contactgraph probe suggest 2 --surface share_sheet\n"
          "  .venv/bin/contactgraph probe health\n")
    return ExitCode.OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="build the demo snapshot from a seeded synthetic network", epilog=epilog())
    p.add_argument("--out", default=".data/demo", metavar="DIR")
    p.add_argument("--force", action="store_true", help="rebuild even if a snapshot exists")
    add_json_flag(p)
    p.set_defaults(func=run)
