"""`contactgraph`: serve, rebuild, demo, snapshot and probe subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import DEFAULT_PORT


def _pin_threads() -> None:
    # Serving answers many small queries: one BLAS/FAISS thread per request
    # beats oversubscribing two cores.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _cmd_serve(args: argparse.Namespace) -> int:
    _pin_threads()
    from graph.clock import SystemClock
    from graph.errors import SnapshotError

    from . import logs
    from .config import ServerConfig
    from .server import PortInUse, serve
    from .state import ServingState

    logs.configure(args.log_level)
    try:
        config = ServerConfig(snapshot=Path(args.snapshot), host=args.host, port=args.port, workers=args.workers,
                              allow_remote_plaintext=args.allow_remote_plaintext)
        state = ServingState.load(config.snapshot, config.graph, SystemClock())
        serve(config, state)
    except (SnapshotError, PortInUse, ValueError) as err:
        print(f"contactgraph serve: {err}", file=sys.stderr)
        return 1
    return 0


def _print_report(report: "object") -> None:
    from graph.rebuild import RebuildReport

    assert isinstance(report, RebuildReport)
    m = report.manifest
    print(f"snapshot {m['snapshot_id']}: {report.events} events, " +
          ", ".join(f"{k} {v}" for k, v in m["counts"].items()))
    print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items()))


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from graph.errors import EventLogError, GraphError
    from graph.rebuild import rebuild

    try:
        report = rebuild([Path(p) for p in args.events], Path(args.out))
    except EventLogError as err:
        print(f"contactgraph rebuild: {err}", file=sys.stderr)
        return 2
    except (GraphError, OSError) as err:
        print(f"contactgraph rebuild: {err}", file=sys.stderr)
        return 1
    _print_report(report)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
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
    _print_report(report)
    print("\nwhen the server is up, in another terminal:\n"
          "  .venv/bin/contactgraph probe suggest 1\n"
          "  .venv/bin/contactgraph probe suggest 2 --surface share_sheet\n"
          "  .venv/bin/contactgraph probe health\n")
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
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


def _cmd_probe(args: argparse.Namespace) -> int:
    from . import probe

    try:
        if args.probe == "suggest":
            probe.emit(probe.suggest(args.target, args.user_id, args.page_size, args.surface, args.page_token,
                                     args.json, args.timeout))
            return 0
        text, ok = probe.health(args.target, args.json, args.timeout)
        probe.emit(text)
        return 0 if ok else 1
    except probe.ProbeError as err:
        print(f"contactgraph probe {args.probe}: {err}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contactgraph", description="Contact suggestions, safe for teenagers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve a snapshot over gRPC")
    p.add_argument("--snapshot", required=True, help="snapshot directory (from rebuild or demo)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument("--workers", type=int, default=8, help="RPC worker threads")
    p.add_argument("--allow-remote-plaintext", action="store_true",
                   help="serve plaintext on a non-loopback host (off by default)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("rebuild", help="turn event logs into a snapshot directory")
    p.add_argument("--events", nargs="+", required=True, metavar="PATH",
                   help="JSONL or CSV event logs (.gz ok), applied in the order given")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=_cmd_rebuild)

    p = sub.add_parser("demo", help="build the demo snapshot from a seeded synthetic network")
    p.add_argument("--out", default=".data/demo", metavar="DIR")
    p.add_argument("--force", action="store_true", help="rebuild even if a snapshot exists")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("snapshot", help="inspect a snapshot directory")
    p.add_argument("action", choices=["info", "verify"])
    p.add_argument("dir")
    p.set_defaults(func=_cmd_snapshot)

    p = sub.add_parser("probe", help="ask a running server")
    probe_sub = p.add_subparsers(dest="probe", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", default=f"127.0.0.1:{DEFAULT_PORT}", metavar="HOST:PORT")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--timeout", type=float, default=5.0, help="seconds")
    q = probe_sub.add_parser("suggest", parents=[common], help="suggestions for a user")
    q.add_argument("user_id", type=int)
    q.add_argument("--page-size", type=int, default=10)
    q.add_argument("--surface", choices=["new_contacts", "share_sheet"], default="new_contacts")
    q.add_argument("--page-token", default="")
    probe_sub.add_parser("health", parents=[common], help="health of the server and each service")
    p.set_defaults(func=_cmd_probe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
