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
    from .safety.policy import PolicyError
    from .server import PortInUse, build_safety, serve
    from .state import ServingState

    logs.configure(args.log_level)
    try:
        snapshot = Path(args.snapshot)
        key = Path(args.guardian_key_file).read_bytes().strip() if args.guardian_key_file else None
        config = ServerConfig(
            snapshot=snapshot, host=args.host, port=args.port, workers=args.workers,
            allow_remote_plaintext=args.allow_remote_plaintext,
            policy_path=Path(args.policy) if args.policy else None,
            data_dir=Path(args.data_dir) if args.data_dir else snapshot.resolve().parent,
            **({"guardian_key": key} if key else {}))
        clock = SystemClock()
        state = ServingState.load(config.snapshot, config.graph, clock, safety=build_safety(config, clock))
        serve(config, state)
    except (SnapshotError, PortInUse, PolicyError, OSError, ValueError) as err:
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


def _cmd_policy(args: argparse.Namespace) -> int:
    from .safety.policy import PolicyError, load_policy

    try:
        if args.policy_command == "check":
            policy = load_policy(Path(args.file))
            print(f"{args.file}: ok (version {policy.version}, {len(policy.regions)} region overrides)")
            return 0
        from .safety.policy_diff import format_diff, policy_diff

        print(format_diff(policy_diff(Path(args.old), Path(args.new), Path(args.snapshot), args.sample, args.seed)))
        return 0
    except PolicyError as err:
        print(f"contactgraph policy {args.policy_command}: {err}", file=sys.stderr)
        return 1


def _cmd_probe(args: argparse.Namespace) -> int:
    from . import probe

    try:
        if args.probe == "suggest":
            probe.emit(probe.suggest(args.target, args.user_id, args.page_size, args.surface, args.page_token,
                                     args.json, args.timeout))
            return 0
        if args.probe == "explain":
            probe.emit(probe.explain(args.target, args.viewer_id, args.candidate_id, args.surface, args.json,
                                     args.timeout))
            return 0
        if args.probe == "check":
            probe.emit(probe.check(args.target, args.sender_id, args.recipient_id, args.json, args.timeout))
            return 0
        if args.probe == "relationship":
            probe.emit(probe.relationship(args.target, args.actor_id, args.target_id, args.json, args.timeout))
            return 0
        if args.probe == "guardian":
            probe.emit(probe.guardian(args.target, args.action, args.guardian_id, args.child_user_id,
                                      args.consent_token, args.suggestions, args.messaging, args.remove,
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
    p.add_argument("--policy", metavar="FILE", help="safety policy (TOML); reloaded on SIGHUP")
    p.add_argument("--guardian-key-file", metavar="FILE", help="key that verifies guardian consent tokens")
    p.add_argument("--data-dir", metavar="DIR",
                   help="durable service state (guardian links and audit); default: the snapshot's parent")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=_cmd_serve)

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
    p.set_defaults(func=_cmd_policy)

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
    q = probe_sub.add_parser("explain", parents=[common], help="why a candidate was or was not suggested")
    q.add_argument("viewer_id", type=int)
    q.add_argument("candidate_id", type=int)
    q.add_argument("--surface", choices=["new_contacts", "share_sheet"], default="new_contacts")
    q = probe_sub.add_parser("check", parents=[common], help="may SENDER message RECIPIENT now?")
    q.add_argument("sender_id", type=int)
    q.add_argument("recipient_id", type=int)
    q = probe_sub.add_parser("relationship", parents=[common], help="what the service holds about a pair")
    q.add_argument("actor_id", type=int)
    q.add_argument("target_id", type=int)
    q = probe_sub.add_parser("guardian", parents=[common], help="guardian oversight calls")
    q.add_argument("action", choices=["link", "unlink", "controls", "overview", "transparency"])
    q.add_argument("child_user_id", type=int)
    q.add_argument("--guardian-id", default="")
    q.add_argument("--consent-token", default="")
    q.add_argument("--suggestions", choices=["on", "off"])
    q.add_argument("--messaging", choices=["platform_default", "friends_only", "no_one"])
    q.add_argument("--remove", type=int, nargs="*", default=[], metavar="USER_ID")
    p.set_defaults(func=_cmd_probe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
