"""`contactgraph serve`: serve a snapshot over gRPC."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from service.cli.exit_codes import ExitCode, epilog
from service.server.config import DEFAULT_PORT

if TYPE_CHECKING:
    from service.server.tls import TlsConfig

log = logging.getLogger(__name__)


class _ServingOptions(TypedDict):
    """The ServerConfig fields set from the overload, metrics and TLS flags."""

    queue: int
    send_workers: int
    send_queue: int
    event_workers: int
    queue_timeout_s: float
    max_request_bytes: int
    metrics_port: int | None
    metrics_host: str | None
    tls: TlsConfig | None


class _GuardianKey(TypedDict, total=False):
    """Empty unless a key file is given: then ServerConfig's own default (a
    random key, so no consent token verifies) stays in place."""

    guardian_key: bytes


def pin_threads() -> list[dict[str, object]]:
    """One BLAS/OpenMP thread per call: serving answers many small queries
    on many gRPC threads, and a BLAS pool per call would oversubscribe the
    cores. Returns threadpoolctl's view of every loaded pool afterwards.

    Environment variables (OMP_NUM_THREADS, ...) cannot do this: OpenBLAS
    reads them when it is loaded, and numpy is imported long before
    ``serve`` runs. threadpoolctl sets the limit through each library's own
    API, and only for libraries already loaded, so import FAISS (which
    brings its own OpenBLAS and OpenMP) first."""
    import faiss
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=1)
    faiss.omp_set_num_threads(1)
    pools: list[dict[str, object]] = threadpool_info()
    return pools


def run(args: argparse.Namespace) -> int:
    from graph.clock import SystemClock
    from graph.errors import SnapshotError, WalError
    from service.safety.policy import PolicyError
    from service.server import logs
    from service.server.config import ServerConfig, StreamConfig, WalConfig, load_page_token_keys
    from service.server.server import PortInUse, build_safety, serve
    from service.server.state import open_serving

    logs.configure(args.log_level)
    from service.server.request_scope import install_log_filter

    install_log_filter()  # request ids in every log line written for a call
    if not args.snapshot and not args.data_dir:
        print("contactgraph serve: give --snapshot DIR or --data-dir DIR", file=sys.stderr)
        return ExitCode.USAGE
    try:
        snapshot = Path(args.snapshot) if args.snapshot else Path(args.data_dir) / "snapshot"
        data_dir = Path(args.data_dir) if args.data_dir else snapshot.resolve().parent
        key = Path(args.guardian_key_file).read_bytes().strip() if args.guardian_key_file else None
        guardian: _GuardianKey = {"guardian_key": key} if key else {}
        stream = StreamConfig(args.log, replicas=args.stream_replicas) if args.log else None
        # With a stream, the stream is the log: no local WAL beside it.
        wal = None if args.no_wal or stream is not None else WalConfig(
            Path(args.wal_dir) if args.wal_dir else data_dir / "wal", segment_bytes=args.wal_segment_bytes)
        config = ServerConfig(
            snapshot=snapshot, host=args.host, port=args.port, workers=args.workers,
            allow_remote_plaintext=args.allow_remote_plaintext,
            policy_path=Path(args.policy) if args.policy else None,
            data_dir=data_dir, wal=wal, stream=stream, watch_interval_s=args.watch_interval,
            token_keys=load_page_token_keys(args.page_token_key_file, os.environ),
            **_serving_options(args),
            **guardian)
        clock = SystemClock()
        state, journal = open_serving(config, clock, safety=build_safety(config, clock))
        # After loading, so that every library serving uses is loaded (and
        # the load itself may use all cores).
        pools = pin_threads()
        log.info("thread pools limited", extra={"fields": {"thread_pools": [
            {"library": p.get("prefix"), "api": p.get("internal_api"), "num_threads": p.get("num_threads")}
            for p in pools]}})
        serve(config, state, journal)
    except _FlagClash as err:
        print(f"contactgraph serve: {err}", file=sys.stderr)
        return ExitCode.USAGE
    except (SnapshotError, WalError, PortInUse, PolicyError, OSError, ValueError) as err:
        print(f"contactgraph serve: {err}", file=sys.stderr)
        return ExitCode.FAILURE
    return ExitCode.OK


class _FlagClash(ValueError):
    """Flags that do not go together: a usage error (exit code 2)."""


def _serving_options(args: argparse.Namespace) -> _ServingOptions:
    """ServerConfig fields from the overload, metrics and TLS flags."""
    from service.server.tls import TlsConfig, parse_role_assignments

    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            raise _FlagClash("TLS needs both --tls-cert and --tls-key")
        tls = TlsConfig(Path(args.tls_cert), Path(args.tls_key),
                        Path(args.tls_client_ca) if args.tls_client_ca else None,
                        parse_role_assignments(args.client_role))
    elif args.client_role:
        raise _FlagClash("--client-role needs mutual TLS (--tls-cert, --tls-key and --tls-client-ca)")
    return {"queue": args.queue, "send_workers": args.send_workers, "send_queue": args.send_queue,
            "event_workers": args.event_workers,
            "queue_timeout_s": args.queue_timeout, "max_request_bytes": args.max_request_bytes,
            "metrics_port": args.metrics_port or None, "metrics_host": args.metrics_host, "tls": tls}


def _add_serving_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overload (RESOURCE_EXHAUSTED past these; see service/server/lanes.py)")
    g.add_argument("--queue", type=int, default=64, help="ordinary calls that may wait for a worker")
    g.add_argument("--send-workers", type=int, default=2,
                   help="workers reserved for SafetyService checks (the send path)")
    g.add_argument("--send-queue", type=int, default=64, help="checks that may wait for a send worker")
    g.add_argument("--event-workers", type=int, default=8,
                   help="ApplyEvents calls running at once (they mostly wait on the WAL's fsync)")
    g.add_argument("--queue-timeout", type=float, default=1.0, metavar="SECONDS",
                   help="longest a call waits in a queue")
    g.add_argument("--max-request-bytes", type=int, default=4 << 20, metavar="N", help="largest request accepted")
    g = p.add_argument_group("metrics")
    g.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                   help="serve Prometheus metrics on http://HOST:PORT/metrics; 0: off")
    g.add_argument("--metrics-host", metavar="HOST", help="address for the metrics port; default: --host")
    g = p.add_argument_group("TLS (plaintext is served on loopback only, unless --allow-remote-plaintext)")
    g.add_argument("--tls-cert", metavar="PEM", help="server certificate chain")
    g.add_argument("--tls-key", metavar="PEM", help="server private key")
    g.add_argument("--tls-client-ca", metavar="PEM",
                   help="require client certificates signed by this CA (mutual TLS, per-method allow lists)")
    g.add_argument("--client-role", action="append", default=[], metavar="ROLE=IDENTITY[,IDENTITY]",
                   help="with mutual TLS, client identities (certificate CN or SAN) holding a role: "
                        "messaging-backend, trust-and-safety, guardian-portal, operator; repeatable. "
                        "Default: each role is held by the identity of the same name")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve a snapshot over gRPC", epilog=epilog({
        ExitCode.OK: "stopped by SIGTERM or SIGINT",
        ExitCode.FAILURE: "could not start or stopped on an error: a snapshot, WAL or policy it refuses, the port "
                          "in use; the message says which",
        ExitCode.USAGE: "also TLS flags that do not go together"}))
    p.add_argument("--snapshot", help="snapshot directory (from rebuild or demo); default: DATA_DIR/snapshot")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument("--workers", type=int, default=2,
                   help="ordinary calls (all but SafetyService checks) running at once")
    p.add_argument("--allow-remote-plaintext", action="store_true",
                   help="serve plaintext on a non-loopback host (off by default)")
    p.add_argument("--policy", metavar="FILE", help="safety policy (TOML); reloaded on SIGHUP")
    p.add_argument("--guardian-key-file", metavar="FILE", help="key that verifies guardian consent tokens")
    p.add_argument("--page-token-key-file", metavar="FILE",
                   help="page token keys, one base64 32-byte key per line: the first seals, all open "
                        "(rotation); default: $CONTACTGRAPH_PAGE_TOKEN_KEY, else a random key per process")
    p.add_argument("--data-dir", metavar="DIR",
                   help="durable service state (guardian links and audit); default: the snapshot's parent")
    p.add_argument("--wal-dir", metavar="DIR", help="write-ahead log directory; default: DATA_DIR/wal")
    p.add_argument("--wal-segment-bytes", type=int, default=64 << 20, metavar="N",
                   help="start a new WAL segment past this size")
    p.add_argument("--no-wal", action="store_true",
                   help="serve without a write-ahead log: acknowledged events die with the process (benchmarks)")
    p.add_argument("--watch-interval", type=float, default=0.0, metavar="SECONDS",
                   help="look this often for a newer snapshot renamed into --snapshot and swap it in; 0: never")
    _add_serving_flags(p)
    p.add_argument("--log", metavar="nats://HOST:PORT[,...]",
                   help="the event log is this NATS JetStream stream (contactgraph.events) instead of the "
                        "local write-ahead log: writes are acknowledged once the stream stored them, every "
                        "server consuming it applies them (docs/operations.md)")
    p.add_argument("--stream-replicas", type=int, default=1, metavar="N",
                   help="with --log: replicas of the stream if this server creates it (3 in production)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)
