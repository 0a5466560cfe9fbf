"""`contactgraph policy`: check a safety policy file, or count what a change would do."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from service.safety.policy import PolicyError, load_policy

    try:
        if args.policy_command == "check":
            policy = load_policy(Path(args.file))
            print(f"{args.file}: ok (version {policy.version}, {len(policy.regions)} region overrides)")
            return 0
        from service.safety.policy_diff import format_diff, policy_diff

        print(format_diff(policy_diff(Path(args.old), Path(args.new), Path(args.snapshot), args.sample, args.seed)))
        return 0
    except PolicyError as err:
        print(f"contactgraph policy {args.policy_command}: {err}", file=sys.stderr)
        return 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policy", help="check a safety policy file, or count what a change would do")
    policy_sub = p.add_subparsers(dest="policy_command", required=True)
    q = policy_sub.add_parser("check", help="validate a policy file")
    q.add_argument("file")
    q = policy_sub.add_parser("diff", help="suggestions each reason would add or remove, on a sample of viewers")
    q.add_argument("old")
    q.add_argument("new")
    q.add_argument("--snapshot", required=True, metavar="DIR")
    q.add_argument("--sample", type=int, default=500, help="viewers sampled (seeded)")
    q.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=run)
