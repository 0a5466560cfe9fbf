"""`contactgraph demo`: build the demo snapshot from a seeded synthetic network."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from service.cli.rebuild import print_report


def run(args: argparse.Namespace) -> int:
    from graph.errors import SnapshotError
    from graph.rebuild import rebuild
    from graph.snapshot import read_manifest
    from graph.synthetic import demo_spec, generate_network, write_demo_logs

    out = Path(args.out)
    snapshot = out / "snapshot"
    if not args.force:
        try:
            read_manifest(snapshot)
            print(f"demo snapshot already built: {snapshot} (use --force to rebuild)")
            return 0
        except SnapshotError:
            pass  # missing or of an older format: build it
    out.mkdir(parents=True, exist_ok=True)
    spec = demo_spec()
    print(f"generating a synthetic network of {spec.n_users} users (seed {spec.seed}) in {out}")
    paths = write_demo_logs(generate_network(spec), out / "logs")
    report = rebuild(paths, snapshot)
    stale_wal = out / "wal"
    if stale_wal.exists():
        # The new snapshot starts a new history: the old demo log no longer
        # continues it and would be refused at start-up.
        shutil.rmtree(stale_wal)
        print(f"removed the previous demo's write-ahead log {stale_wal}")
    print_report(report)
    print("\nwhen the server is up, in another terminal:\n"
          "  .venv/bin/contactgraph probe suggest 1\n"
          "  .venv/bin/contactgraph probe suggest 2 --surface share_sheet\n"
          "  .venv/bin/contactgraph probe health\n")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="build the demo snapshot from a seeded synthetic network")
    p.add_argument("--out", default=".data/demo", metavar="DIR")
    p.add_argument("--force", action="store_true", help="rebuild even if a snapshot exists")
    p.set_defaults(func=run)
