"""`contactgraph probe`: ask a running server (suggest, explain, check, relationship, guardian, health, load)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.cli.exit_codes import ExitCode, epilog
from service.server.config import DEFAULT_PORT

_UNREACHABLE = {ExitCode.FAILURE: "the server answered with an error status",
                ExitCode.UNREACHABLE: "nothing answers at --target, or TLS does not match"}


def _endpoint(args: argparse.Namespace) -> object:
    """The probe's Endpoint from --target, the TLS flags and --request-id."""
    from service.cli.probe import Endpoint
    from service.server.tls import ClientTls

    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        tls = ClientTls(Path(args.tls_ca) if args.tls_ca else None, Path(args.tls_cert) if args.tls_cert else None,
                        Path(args.tls_key) if args.tls_key else None, args.tls_server_name)
    return Endpoint(args.target, tls, args.request_id)


def _cmd_load(args: argparse.Namespace, endpoint: object) -> int:
    from service.cli.load import LoadError, LoadInputError, LoadSpec, LoadUnreachable, read_user_ids, run_load
    from service.cli.probe import Endpoint

    assert isinstance(endpoint, Endpoint)
    try:
        users = read_user_ids(args.snapshot, args.users_file)
        spec = LoadSpec(
            target=endpoint.address, users=users, method=args.method, concurrency=args.concurrency,
            duration_s=args.duration if args.duration is not None else (10.0 if args.requests is None else None),
            requests=args.requests, qps=args.qps, warmup_s=args.warmup, timeout_s=args.timeout,
            page_size=args.page_size, recipients=args.recipients, request_id=endpoint.request_id,
            tls=endpoint.tls, seed=args.seed, channels=args.channels)
        interactive = sys.stderr.isatty() or not args.json
        result = run_load(spec, progress_to=sys.stderr if interactive and not args.quiet else None)
    except LoadError as err:
        print(f"contactgraph probe load: {err}", file=sys.stderr)
        if isinstance(err, LoadUnreachable):
            return ExitCode.UNREACHABLE
        return ExitCode.BAD_INPUT if isinstance(err, LoadInputError) else ExitCode.USAGE
    print(result.to_json() if args.json else result.table())
    return ExitCode.OK if result.ok > 0 else ExitCode.FAILURE


def run(args: argparse.Namespace) -> int:
    from service.cli import probe

    try:
        args.target = _endpoint(args)
        if args.probe == "load":
            return _cmd_load(args, args.target)
        if args.probe == "suggest":
            probe.emit(probe.suggest(args.target, args.user_id, args.page_size, args.surface, args.page_token,
                                     args.json, args.timeout))
            return ExitCode.OK
        if args.probe == "explain":
            probe.emit(probe.explain(args.target, args.viewer_id, args.candidate_id, args.surface, args.json,
                                     args.timeout))
            return ExitCode.OK
        if args.probe == "check":
            probe.emit(probe.check(args.target, args.sender_id, args.recipient_id, args.json, args.timeout))
            return ExitCode.OK
        if args.probe == "relationship":
            probe.emit(probe.relationship(args.target, args.actor_id, args.target_id, args.json, args.timeout))
            return ExitCode.OK
        if args.probe == "guardian":
            probe.emit(probe.guardian(args.target, args.action, args.guardian_id, args.child_user_id,
                                      args.consent_token, args.suggestions, args.messaging, args.remove,
                                      args.json, args.timeout))
            return ExitCode.OK
        text, ok = probe.health(args.target, args.json, args.timeout)
        probe.emit(text)
        return ExitCode.OK if ok else ExitCode.NOT_SERVING
    except probe.ProbeError as err:
        print(f"contactgraph probe {args.probe}: {err}", file=sys.stderr)
        return ExitCode.UNREACHABLE if isinstance(err, probe.Unreachable) else ExitCode.FAILURE


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("probe", help="ask a running server", epilog=epilog(
        {**_UNREACHABLE, ExitCode.NOT_SERVING: "health: the server or a service is not SERVING"}))
    probe_sub = p.add_subparsers(dest="probe", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", default=f"127.0.0.1:{DEFAULT_PORT}", metavar="HOST:PORT")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--timeout", type=float, default=5.0, help="seconds")
    common.add_argument("--request-id", metavar="ID",
                        help="sent as x-request-id metadata; the server's log lines carry it")
    common.add_argument("--tls", action="store_true", help="use TLS with the system's CAs")
    common.add_argument("--tls-ca", metavar="PEM", help="use TLS, trusting this CA for the server's certificate")
    common.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    common.add_argument("--tls-key", metavar="PEM", help="client private key (mutual TLS)")
    common.add_argument("--tls-server-name", metavar="NAME", help="name to check the server's certificate against")
    q = probe_sub.add_parser("suggest", parents=[common], help="suggestions for a user", epilog=epilog(_UNREACHABLE))
    q.add_argument("user_id", type=int)
    q.add_argument("--page-size", type=int, default=10)
    q.add_argument("--surface", choices=["new_contacts", "share_sheet"], default="new_contacts")
    q.add_argument("--page-token", default="")
    probe_sub.add_parser("health", parents=[common], help="health of the server and each service", epilog=epilog(
        {**_UNREACHABLE, ExitCode.NOT_SERVING: "the server or a service reports other than SERVING (the table or "
                                               "JSON says which)"}))
    q = probe_sub.add_parser("explain", parents=[common], help="why a candidate was or was not suggested",
                             epilog=epilog(_UNREACHABLE))
    q.add_argument("viewer_id", type=int)
    q.add_argument("candidate_id", type=int)
    q.add_argument("--surface", choices=["new_contacts", "share_sheet"], default="new_contacts")
    q = probe_sub.add_parser("check", parents=[common], help="may SENDER message RECIPIENT now?",
                             epilog=epilog(_UNREACHABLE))
    q.add_argument("sender_id", type=int)
    q.add_argument("recipient_id", type=int)
    q = probe_sub.add_parser("relationship", parents=[common], help="what the service holds about a pair",
                             epilog=epilog(_UNREACHABLE))
    q.add_argument("actor_id", type=int)
    q.add_argument("target_id", type=int)
    q = probe_sub.add_parser("load", parents=[common], help="bounded load: QPS, latency percentiles, errors",
                             description="Send SuggestContacts or CheckMessaging calls for user ids sampled from "
                                         "a snapshot or a file, for --duration seconds or --requests calls, with "
                                         "--concurrency in flight, optionally paced to --qps. --timeout is per call.",
                             epilog=epilog({ExitCode.FAILURE: "no call succeeded",
                                            ExitCode.USAGE: "also bounds that cannot hold (--concurrency 0, ...)",
                                            ExitCode.BAD_INPUT: "user ids that cannot be read, or fewer than two",
                                            ExitCode.UNREACHABLE: "nothing answers at --target"}))
    q.add_argument("--method", choices=["suggest", "check", "batch-check"], default="suggest")
    bound = q.add_argument_group("bounds (the first reached stops the load; default --duration 10)")
    bound.add_argument("--duration", type=float, metavar="SECONDS")
    bound.add_argument("--requests", type=int, metavar="N")
    q.add_argument("--concurrency", type=int, default=8, help="calls in flight at once")
    q.add_argument("--channels", type=int, default=1,
                   help="connections the calls are spread over (processes sharing a port balance by connection)")
    q.add_argument("--qps", type=float, help="target rate; default: as fast as answers come back")
    q.add_argument("--warmup", type=float, default=0.0, metavar="SECONDS", help="not counted")
    ids = q.add_mutually_exclusive_group(required=True)
    ids.add_argument("--snapshot", metavar="DIR", help="sample user ids from this snapshot")
    ids.add_argument("--users-file", metavar="FILE", help="sample user ids from a file (one per line, or .npy)")
    q.add_argument("--page-size", type=int, default=20, help="suggest: page size")
    q.add_argument("--recipients", type=int, default=50, help="batch-check: recipients per call")
    q.add_argument("--seed", type=int, default=1, help="seeds the user sample")
    q.add_argument("--quiet", action="store_true", help="no live progress")
    q.set_defaults(timeout=1.0)
    q = probe_sub.add_parser("guardian", parents=[common], help="guardian oversight calls",
                             epilog=epilog(_UNREACHABLE))
    q.add_argument("action", choices=["link", "unlink", "controls", "overview", "transparency"])
    q.add_argument("child_user_id", type=int)
    q.add_argument("--guardian-id", default="")
    q.add_argument("--consent-token", default="")
    q.add_argument("--suggestions", choices=["on", "off"])
    q.add_argument("--messaging", choices=["platform_default", "friends_only", "no_one"])
    q.add_argument("--remove", type=int, nargs="*", default=[], metavar="USER_ID")
    p.set_defaults(func=run)
