"""`contactgraph snapshot`: inspect or verify a snapshot directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.cli.exit_codes import ExitCode, epilog
from service.cli.output import add_json_flag, print_json


def run(args: argparse.Namespace) -> int:
    from graph.errors import SnapshotError
    from graph.snapshot import read_manifest, verify

    try:
        manifest = verify(Path(args.dir)) if args.action == "verify" else read_manifest(Path(args.dir))
    except SnapshotError as err:
        print(f"contactgraph snapshot {args.action}: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.action == "verify":
        if args.json:
            print_json({"dir": args.dir, "ok": True, "files": len(manifest["files"])})
        else:
            print(f"{args.dir}: ok ({len(manifest['files'])} files match their checksums)")
        return ExitCode.OK
    shown = {k: v for k, v in manifest.items() if k != "files"}
    if args.json:
        print_json(shown)
    else:
        # The manifest is itself the clearest text: indented JSON.
        print(json.dumps(shown, indent=2, sort_keys=True))
    return ExitCode.OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("snapshot", help="inspect a snapshot directory", epilog=epilog({
        ExitCode.BAD_INPUT: "not a snapshot directory, of another format, or (verify) a file that does not match "
                            "its checksum"}))
    p.add_argument("action", choices=["info", "verify"])
    p.add_argument("dir")
    add_json_flag(p)
    p.set_defaults(func=run)
