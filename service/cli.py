"""`contactgraph`: serve, rebuild, demo, snapshot and probe subcommands."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .config import DEFAULT_PORT

if TYPE_CHECKING:
    from graph.eventlog import RejectedLine


def _pin_threads() -> None:
    # Serving answers many small queries: one BLAS/FAISS thread per request
    # beats oversubscribing two cores.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _cmd_serve(args: argparse.Namespace) -> int:
    _pin_threads()
    from graph.clock import SystemClock
    from graph.errors import SnapshotError

    from graph.errors import WalError

    from . import logs
    from .config import ServerConfig, WalConfig, load_page_token_keys
    from .safety.policy import PolicyError
    from .server import PortInUse, build_safety, serve
    from .state import open_serving

    logs.configure(args.log_level)
    from .request_scope import install_log_filter

    install_log_filter()  # request ids in every log line written for a call
    if not args.snapshot and not args.data_dir:
        print("contactgraph serve: give --snapshot DIR or --data-dir DIR", file=sys.stderr)
        return 2
    try:
        snapshot = Path(args.snapshot) if args.snapshot else Path(args.data_dir) / "snapshot"
        data_dir = Path(args.data_dir) if args.data_dir else snapshot.resolve().parent
        key = Path(args.guardian_key_file).read_bytes().strip() if args.guardian_key_file else None
        wal = None if args.no_wal else WalConfig(
            Path(args.wal_dir) if args.wal_dir else data_dir / "wal", segment_bytes=args.wal_segment_bytes)
        config = ServerConfig(
            snapshot=snapshot, host=args.host, port=args.port, workers=args.workers,
            allow_remote_plaintext=args.allow_remote_plaintext,
            policy_path=Path(args.policy) if args.policy else None,
            data_dir=data_dir, wal=wal, watch_interval_s=args.watch_interval,
            token_keys=load_page_token_keys(args.page_token_key_file, os.environ),
            **_serving_options(args),
            **({"guardian_key": key} if key else {}))
        clock = SystemClock()
        state, journal = open_serving(config, clock, safety=build_safety(config, clock))
        serve(config, state, journal)
    except (SnapshotError, WalError, PortInUse, PolicyError, OSError, ValueError) as err:
        print(f"contactgraph serve: {err}", file=sys.stderr)
        return 1
    return 0


def _serving_options(args: argparse.Namespace) -> dict[str, object]:
    """ServerConfig fields from the overload, metrics and TLS flags."""
    from .tls import TlsConfig, parse_role_assignments

    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        tls = TlsConfig(Path(args.tls_cert), Path(args.tls_key),
                        Path(args.tls_client_ca) if args.tls_client_ca else None,
                        parse_role_assignments(args.client_role))
    elif args.client_role:
        raise ValueError("--client-role needs mutual TLS (--tls-cert, --tls-key and --tls-client-ca)")
    return {"queue": args.queue, "send_workers": args.send_workers, "send_queue": args.send_queue,
            "event_workers": args.event_workers,
            "queue_timeout_s": args.queue_timeout, "max_request_bytes": args.max_request_bytes,
            "metrics_port": args.metrics_port or None, "metrics_host": args.metrics_host, "tls": tls}


def _add_serving_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overload (RESOURCE_EXHAUSTED past these; see service/interceptors.py)")
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


def _print_report(report: "object") -> None:
    from graph.rebuild import RebuildReport

    assert isinstance(report, RebuildReport)
    m = report.manifest
    if report.inputs:
        width = max(len("input"), *(len(i.path) for i in report.inputs))
        print(f"{'input':<{width}}  {'read':>12}  {'rejected':>9}  {'kept':>12}  {'seconds':>8}")
        for i in report.inputs:
            print(f"{i.path:<{width}}  {i.read:>12,}  {i.rejected:>9,}  {i.kept:>12,}  {i.seconds:>8.2f}")
        if len(report.inputs) > 1:
            read = sum(i.read for i in report.inputs)
            print(f"{'all inputs':<{width}}  {read:>12,}  {report.rejected:>9,}  {read - report.rejected:>12,}  "
                  f"{sum(i.seconds for i in report.inputs):>8.2f}")
    print(f"snapshot {m['snapshot_id']}: {report.events:,} events, " +
          ", ".join(f"{k} {v}" for k, v in m["counts"].items()))
    order = {phase: i for i, phase in enumerate(_PHASES)}
    print(f"{'phase':<8}  {'seconds':>8}")
    for phase, seconds in sorted(report.timings.items(), key=lambda item: order.get(item[0], len(order) - 1)):
        print(f"{phase:<8}  {seconds:>8.2f}")


# The rebuild's phases in the order they run; "total" last.
_PHASES = ("read", "fold", "embed", "index", "contacts", "ranker", "write", "total")


class _RejectFile:
    """Skipped lines, kept in a temporary file until the rebuild succeeds
    (a failed rebuild leaves nothing behind), then moved to ``path``.
    Format: see the --reject-file help."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._tmp: IO[str] | None = None
        self._source: str | None = None

    def add(self, rejected: RejectedLine) -> None:
        if self._tmp is None:
            self._tmp = tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", suffix=".rejects",
                                                    delete=False)
            self._tmp.write(_REJECT_FILE_PREAMBLE)
        out = self._tmp
        error = rejected.error
        if error.path != self._source:
            self._source = error.path
            out.write(f"## {error.path}\n")
            if rejected.header:
                out.write(rejected.header + "\n")
        out.write(f"# {error}\n{rejected.text}\n")
        self.count += 1

    def keep(self) -> None:
        if self._tmp is None:
            return
        self._tmp.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self._tmp.name, self.path)
        self._tmp = None

    def discard(self) -> None:
        if self._tmp is None:
            return
        self._tmp.close()
        os.unlink(self._tmp.name)
        self._tmp = None


_REJECT_FILE_PREAMBLE = """\
# Lines `contactgraph rebuild` skipped as bad. One section per input: "## FILE",
# that input's header line (none for JSON lines), then each bad line as read
# after a "# FILE:LINE: reason" line (Parquet rows come as edge CSV lines).
# To re-feed a section: fix its lines, drop every line starting with "#"
# (grep -v '^#') and pass the result, named .csv or .jsonl, with --events.
"""


_NEXT_PHASE = {"read": "training the ranker on an inner split", "ranker": "folding the events",
               "fold": "embedding", "embed": "indexing", "index": "building the contact graph",
               "contacts": "writing the snapshot"}


def _print_phase(phase: str, seconds: float) -> None:
    """One line per finished phase on stderr, saying what comes next: a
    rebuild of millions of events runs for minutes."""
    following = _NEXT_PHASE.get(phase)
    print(f"contactgraph rebuild: {phase} done in {seconds:.1f}s" + (f"; {following} ..." if following else ""),
          file=sys.stderr, flush=True)


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from graph.errors import EventLogError, GraphError, TooManyBadLines
    from graph.eventlog import BadLines
    from graph.rebuild import rebuild

    if args.max_errors < 0:
        print("contactgraph rebuild: --max-errors must be 0 or more", file=sys.stderr)
        return 2
    out = Path(args.out)
    rejects = _RejectFile(Path(args.reject_file) if args.reject_file else out.with_name(out.name + ".rejects"))

    def on_reject(rejected: RejectedLine) -> None:
        tqdm.write(str(rejected.error), file=sys.stderr)  # above any progress bar
        rejects.add(rejected)

    ledger = None
    if args.ledger:
        from graph.snapshot import load_ledger

        try:
            ledger = load_ledger(Path(args.ledger))
        except GraphError as err:
            print(f"contactgraph rebuild: --ledger: {err}", file=sys.stderr)
            return 2
    try:
        report = rebuild([Path(p) for p in args.events], out, bad_lines=BadLines(args.max_errors, on_reject),
                         progress=True, ledger=ledger, on_phase=_print_phase)
    except TooManyBadLines as err:
        rejects.discard()
        print(f"contactgraph rebuild: {err}", file=sys.stderr)
        print(f"contactgraph rebuild: more than --max-errors {args.max_errors} bad lines; nothing written",
              file=sys.stderr)
        return 2
    except EventLogError as err:
        rejects.discard()
        print(f"contactgraph rebuild: {err}", file=sys.stderr)
        return 2
    except (GraphError, OSError) as err:
        rejects.discard()
        print(f"contactgraph rebuild: {err}", file=sys.stderr)
        return 1
    except BaseException:
        rejects.discard()
        raise
    try:
        rejects.keep()
    except OSError as err:
        print(f"contactgraph rebuild: snapshot written, but the reject file could not be: {err}", file=sys.stderr)
        return 1
    _print_report(report)
    if rejects.count:
        print(f"{rejects.count} bad line(s) skipped, written to {rejects.path}")
    return 0


def _cmd_wal_compact(args: argparse.Namespace) -> int:
    """Compact the log against a snapshot and remove what its erasure
    ledger says must go: the log's records of erased users, their guardian
    records, older snapshot directories that still hold their ids."""
    from graph.snapshot import load_ledger, remove_snapshot, snapshots_naming, verify
    from graph.wal_format import list_segments

    from .safety.guardian import scrub_journal
    from .wal import compact_log

    snapshot = Path(args.snapshot)
    watermark = int(verify(snapshot)["watermark"])
    ledger = load_ledger(snapshot)
    data_dir = Path(args.data_dir) if args.data_dir else snapshot.resolve().parent
    done = compact_log(Path(args.wal_dir), watermark, ledger)
    kept = list_segments(Path(args.wal_dir))
    print(f"removed {len(done.removed)} segment(s) wholly at or below watermark {watermark}; "
          f"{len(kept)} kept")
    for path in done.removed:
        print(f"  removed {path.name}")
    for old, new in done.rewritten:
        print(f"  rewrote {old.name} as {new.name}")
    if ledger:
        print(f"{len(ledger)} erased user(s) in the snapshot's ledger: {done.redacted} logged event(s) redacted")
    if done.pending:
        print(f"{done.pending} erasure(s) after the watermark stay in the log until a newer snapshot covers them")
    for path in done.unscrubbed:
        print(f"warning: {path.name} names erased users but a server is writing to it; compact again once it "
              "has moved on to a new segment", file=sys.stderr)
    journal = Path(args.guardian_journal) if args.guardian_journal else data_dir / "guardian" / "journal.jsonl"
    if ledger:
        changed = scrub_journal(journal, ledger.subset)
        if changed is None:
            print(f"{journal}: open in a running server, which scrubs it itself")
        elif changed:
            print(f"{journal}: {changed} record(s) of erased users dropped or changed")
        for path in snapshots_naming(data_dir, ledger, keep=snapshot):
            remove_snapshot(path)
            print(f"removed snapshot directory {path} (it holds erased users' ids)")
    return 0


def _cmd_wal(args: argparse.Namespace) -> int:
    from graph.errors import GraphError, SnapshotError, WalError
    from graph.wal_format import WalReader, list_segments

    try:
        if args.wal_command == "compact":
            return _cmd_wal_compact(args)
        segments = list_segments(Path(args.wal_dir))
        if not segments:
            print(f"{args.wal_dir}: no WAL segments")
            return 0
        reader = WalReader(Path(args.wal_dir), segments[0].first_sequence - 1)
        events = sum(len(batch.events) for batch in reader)
        print(f"{args.wal_dir}: {len(segments)} segment(s), {reader.records} record(s), {events} event(s), "
              f"sequences {segments[0].first_sequence}..{reader.last_sequence}")
        for segment in segments:
            print(f"  {segment.path.name}  {segment.path.stat().st_size} bytes")
        if reader.torn is not None:
            print(f"torn tail: {reader.torn.bad_bytes} bytes at offset {reader.torn.offset} of the newest segment "
                  f"({reader.torn.reason}); the server cuts it off when it starts")
        return 0
    except (SnapshotError, WalError, GraphError, OSError) as err:
        print(f"contactgraph wal {args.wal_command}: {err}", file=sys.stderr)
        return 1


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
    stale_wal = out / "wal"
    if stale_wal.exists():
        # The new snapshot starts a new history: the old demo log no longer
        # continues it and would be refused at start-up.
        shutil.rmtree(stale_wal)
        print(f"removed the previous demo's write-ahead log {stale_wal}")
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


def _endpoint(args: argparse.Namespace) -> "object":
    """The probe's Endpoint from --target, the TLS flags and --request-id."""
    from .probe import Endpoint
    from .tls import ClientTls

    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        tls = ClientTls(Path(args.tls_ca) if args.tls_ca else None, Path(args.tls_cert) if args.tls_cert else None,
                        Path(args.tls_key) if args.tls_key else None, args.tls_server_name)
    return Endpoint(args.target, tls, args.request_id)


def _cmd_load(args: argparse.Namespace, endpoint: "object") -> int:
    from .load import LoadError, LoadSpec, read_user_ids, run_load
    from .probe import Endpoint

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
        return 1
    print(result.to_json() if args.json else result.table())
    return 0 if result.ok > 0 else 1


def _cmd_probe(args: argparse.Namespace) -> int:
    from . import probe

    try:
        args.target = _endpoint(args)
        if args.probe == "load":
            return _cmd_load(args, args.target)
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


def _cmd_eval(args: argparse.Namespace) -> int:
    """Temporal evaluation on the data sets under --data (see service.eval)."""
    from .eval import EvalConfig, run
    from .eval.data import DATASETS

    config = EvalConfig(cuts=tuple(args.cuts), n_boot=args.bootstrap, seed=args.seed, max_users=args.max_users,
                        node2vec_venv=args.node2vec)
    try:
        run(Path(args.data), args.datasets or list(DATASETS), config, out=lambda line: print(line, flush=True))
    except FileNotFoundError as err:
        print(f"contactgraph eval: {err}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contactgraph", description="Contact suggestions, safe for teenagers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve a snapshot over gRPC")
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
                   help="JSONL, CSV (.gz ok) or Parquet event logs and WAL segments (.wal files or a WAL "
                        "directory), applied in the order given; an event id seen before is skipped")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--max-errors", type=int, default=0, metavar="N",
                   help="skip up to N bad lines (all inputs together), each reported on stderr as "
                        "FILE:LINE: reason (Parquet: FILE:row N: reason) and written to the reject file; "
                        "one more stops the rebuild with exit code 2 and nothing written (no snapshot, no "
                        "reject file). Default 0: the first bad line stops it. A bad header or an unreadable "
                        "file always stops it")
    p.add_argument("--ledger", metavar="PATH",
                   help="erasure ledger to apply: an earlier snapshot directory or a ledger file (its "
                        "erasure.key beside it); events naming those users are dropped, so old raw logs "
                        "cannot bring an erased user back")
    p.add_argument("--reject-file", metavar="PATH",
                   help="where skipped lines go; default OUT.rejects beside the snapshot directory; written "
                        "only when a line was skipped. Plain text, one section per input: '## FILE', that "
                        "input's header line, then each bad line as read after a '# FILE:LINE: reason' line "
                        "(Parquet rows as edge CSV lines). To re-feed a section, fix its lines, drop the "
                        "lines starting with '#' (grep -v '^#') and pass it, named .csv or .jsonl, with --events")
    p.set_defaults(func=_cmd_rebuild)

    p = sub.add_parser("wal", help="inspect or compact a write-ahead log")
    wal_sub = p.add_subparsers(dest="wal_command", required=True)
    q = wal_sub.add_parser("compact", help="remove segments wholly covered by a snapshot, and every trace of "
                                           "the users its erasure ledger holds")
    q.add_argument("--wal-dir", required=True, metavar="DIR")
    q.add_argument("--snapshot", required=True, metavar="DIR",
                   help="a verified snapshot; its watermark and erasure ledger decide")
    q.add_argument("--data-dir", metavar="DIR",
                   help="where older snapshot directories and the guardian journal live; default: the snapshot's "
                        "parent")
    q.add_argument("--guardian-journal", metavar="FILE", help="default: DATA_DIR/guardian/journal.jsonl")
    q = wal_sub.add_parser("info", help="segments, records and sequence range")
    q.add_argument("wal_dir", metavar="DIR")
    p.set_defaults(func=_cmd_wal)

    p = sub.add_parser("demo", help="build the demo snapshot from a seeded synthetic network")
    p.add_argument("--out", default=".data/demo", metavar="DIR")
    p.add_argument("--force", action="store_true", help="rebuild even if a snapshot exists")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("eval", help="evaluate suggestions against baselines on temporal data sets")
    p.add_argument("--data", required=True, metavar="DIR", help="folder holding collegemsg/ and bitcoin-otc/")
    p.add_argument("--datasets", nargs="+", choices=["collegemsg", "bitcoin-otc"], help="default: all")
    p.add_argument("--cuts", nargs="+", type=float, default=[0.7, 0.8, 0.9], metavar="Q",
                   help="time quantiles to cut at")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--max-users", type=int, default=None, help="evaluate a seeded sample of users per cut")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--node2vec", nargs="?", type=Path, const=Path(".venv-node2vec"), default=None, metavar="VENV",
                   help="also rank by node2vec (pecanpy in VENV, default .venv-node2vec; make node2vec-venv); "
                        "skipped with a note when it is not installed")
    p.set_defaults(func=_cmd_eval)

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
    common.add_argument("--request-id", metavar="ID",
                        help="sent as x-request-id metadata; the server's log lines carry it")
    common.add_argument("--tls", action="store_true", help="use TLS with the system's CAs")
    common.add_argument("--tls-ca", metavar="PEM", help="use TLS, trusting this CA for the server's certificate")
    common.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    common.add_argument("--tls-key", metavar="PEM", help="client private key (mutual TLS)")
    common.add_argument("--tls-server-name", metavar="NAME", help="name to check the server's certificate against")
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
    q = probe_sub.add_parser("load", parents=[common], help="bounded load: QPS, latency percentiles, errors",
                             description="Send SuggestContacts or CheckMessaging calls for user ids sampled from "
                                         "a snapshot or a file, for --duration seconds or --requests calls, with "
                                         "--concurrency in flight, optionally paced to --qps. --timeout is per call.")
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
