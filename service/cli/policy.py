"""`contactgraph policy`: check a safety policy file, or count what a change would do."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.cli.exit_codes import ExitCode, epilog
from service.cli.output import add_json_flag, print_json

_BAD_POLICY = {ExitCode.BAD_INPUT: "a policy file that is missing, not TOML or breaks a rule; the message names "
                                   "the key"}


def run(args: argparse.Namespace) -> int:
    from graph.errors import SnapshotError
    from service.safety.policy import PolicyError, load_policy

    try:
        if args.policy_command == "check":
            policy = load_policy(Path(args.file))
            if args.json:
                print_json({"file": args.file, "ok": True, "version": policy.version,
                            "region_overrides": len(policy.regions)})
            else:
                print(f"{args.file}: ok (version {policy.version}, {len(policy.regions)} region overrides)")
            return ExitCode.OK
        from service.safety.policy_diff import diff_document, format_diff, policy_diff

        diff = policy_diff(Path(args.old), Path(args.new), Path(args.snapshot), args.sample, args.seed)
        if args.json:
            print_json(diff_document(diff))
        else:
            print(format_diff(diff))
        return ExitCode.OK
    except (PolicyError, SnapshotError) as err:
        print(f"contactgraph policy {args.policy_command}: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policy", help="check a safety policy file, or count what a change would do",
                       epilog=epilog(_BAD_POLICY))
    policy_sub = p.add_subparsers(dest="policy_command", required=True)
    q = policy_sub.add_parser("check", help="validate a policy file", epilog=epilog(_BAD_POLICY))
    q.add_argument("file")
    add_json_flag(q)
    q = policy_sub.add_parser("diff", help="suggestions each reason would add or remove, on a sample of viewers",
                              epilog=epilog({ExitCode.BAD_INPUT: "a bad policy file on either side, or a missing "
                                                                 "or damaged --snapshot"}))
    q.add_argument("old")
    q.add_argument("new")
    q.add_argument("--snapshot", required=True, metavar="DIR")
    q.add_argument("--sample", type=int, default=500, help="viewers sampled (seeded)")
    q.add_argument("--seed", type=int, default=7)
    add_json_flag(q)
    p.set_defaults(func=run)
