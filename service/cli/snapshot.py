"""`contactgraph snapshot`: inspect or verify a snapshot directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from graph.errors import SnapshotError
    from graph.snapshot import read_manifest, verify

    try:
        manifest = verify(Path(args.dir)) if args.action == "verify" else read_manifest(Path(args.dir))
    except SnapshotError as err:
        print(f"contactgraph snapshot {args.action}: {err}", file=sys.stderr)
        return 1
    if args.action == "verify":
        print(f"{args.dir}: ok ({len(manifest['files'])} files match their checksums)")
    else:
        shown = {k: v for k, v in manifest.items() if k != "files"}
        print(json.dumps(shown, indent=2, sort_keys=True))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("snapshot", help="inspect a snapshot directory")
    p.add_argument("action", choices=["info", "verify"])
    p.add_argument("dir")
    p.set_defaults(func=run)
