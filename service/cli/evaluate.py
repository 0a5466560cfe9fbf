"""`contactgraph eval`: temporal evaluation against baselines (the harness is service.cli.eval)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from graph.bounds import Bounds
from service.cli.exit_codes import ExitCode, epilog
from service.cli.output import add_json_flag, print_json

# service.cli.eval.data.DATASETS' keys (kept here so that parsing the command
# line does not import numpy; a test checks the two agree).
DATASET_NAMES = ["collegemsg", "bitcoin-otc", "sx-mathoverflow", "higgs-twitter"]


def run(args: argparse.Namespace) -> int:
    """Temporal evaluation on the data sets under --data (see service.cli.eval)."""
    from service.cli.eval import EvalConfig, run
    from service.cli.eval.data import DATASETS
    from service.cli.eval.harness import cut_document

    config = EvalConfig(cuts=tuple(args.cuts), n_boot=args.bootstrap, seed=args.seed, max_users=args.max_users,
                        node2vec_venv=args.node2vec, bounds=Bounds.off() if args.no_caps else Bounds())

    # Under --json the running report goes to stderr and stdout gets the
    # summary of every cut as one document.
    stream = sys.stderr if args.json else sys.stdout
    try:
        results = run(Path(args.data), args.datasets or list(DATASETS), config,
                      out=lambda line: print(line, file=stream, flush=True))
    except FileNotFoundError as err:
        print(f"contactgraph eval: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.report is not None:
        from service.cli.eval.report import write_report

        path = write_report(args.report, results, config, command=" ".join(["contactgraph", *sys.argv[1:]]))
        print(f"report: {path}", file=stream, flush=True)
    if args.json:
        print_json({"cuts": [cut_document(r, config) for r in results]})
    return ExitCode.OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("eval", help="evaluate suggestions against baselines on temporal data sets",
                       epilog=epilog({ExitCode.BAD_INPUT: "a data set missing under --data"}))
    p.add_argument("--data", required=True, metavar="DIR", help="folder holding collegemsg/, bitcoin-otc/, ...")
    p.add_argument("--datasets", nargs="+", choices=DATASET_NAMES, help="default: all")
    p.add_argument("--cuts", nargs="+", type=float, default=[0.7, 0.8, 0.9], metavar="Q",
                   help="time quantiles to cut at")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--max-users", type=int, default=None, help="evaluate a seeded sample of users per cut "
                   "(default: all, but 400 on sx-mathoverflow and higgs-twitter)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-caps", action="store_true",
                   help="serve without the bounds on work per request (graph.bounds), to measure what they cost")
    p.add_argument("--node2vec", nargs="?", type=Path, const=Path(".venv-node2vec"), default=None, metavar="VENV",
                   help="also rank by node2vec (pecanpy in VENV, default .venv-node2vec; make node2vec-venv); "
                        "skipped with a note when it is not installed")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="also write DIR/report.html: one self-contained page with the tables and plots")
    add_json_flag(p)
    p.set_defaults(func=run)
