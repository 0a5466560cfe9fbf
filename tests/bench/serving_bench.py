"""Serving benchmark: the gRPC service on a large synthetic snapshot,
against a bare echo server with the same message sizes, with the server
and the load generator (``contactgraph probe load``) as separate processes.

    python -m tests.bench.serving_bench [--users N --edges M] [--repeats R]

The snapshot (default 1M users / 20M follows) is built once into
``.data/bench/`` and reused. Every figure is the median of ``--repeats``
runs; the machine has two cores that the server, the load generator and
anything else running share, so the table also shows how much CPU other
processes took during the runs.

Measured:
- the ceiling: echo max QPS (sync server as ours; grpc.aio too);
- SuggestContacts (page 20, safety on): max QPS and its ratio to echo
  (target >= 50%); p99 at 70% of its own max (target < 10 ms); RSS of the
  serving process (target < 3 GiB);
- CheckMessaging: p99 at 70% of its max (target < 2 ms), beside the echo
  server's p99 at 70% of its own max (the same target for a server that
  does nothing), and both at a fixed 2,000 QPS; CheckMessaging paced at
  2,500-4,000 QPS: the highest rate with p99 under 2 ms (its open-loop knee);
  BatchCheckMessaging with 50 recipients: p99 at 70% of its max (< 5 ms);
- concurrency designs for SuggestContacts: the threaded server with 2
  workers (the default) and with 8, the servicers inline on grpc.aio's
  event loop, and two read-only processes of the threaded server sharing
  the port (SO_REUSEPORT; the load spread over 8 connections), the
  ceiling of a one-writer-many-followers design;
- CheckMessaging at 200 QPS while a 64-deep SuggestContacts flood runs;
- what the serving interceptor costs per call (echo with and without it);
- in process, before any server starts: CPU per call of each servicer
  method on the same snapshot and requests as the load generator's (no
  gRPC; JSON request logging to /dev/null as the server writes it), the
  figure least disturbed by whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from contactgraph.v1 import safety_service_pb2, suggestion_service_pb2, surface_pb2

from .serving_snapshot import ensure_snapshot

PY = sys.executable
GIB = 1 << 30
# BASELINES.md, gRPC Python on this kind of machine: sync server, 4 workers,
# aio client, 8 in flight; the service goal derived there is ~2k req/s.
BASELINE_ECHO_QPS = 5130.0
BASELINE_SERVICE_QPS = 2000.0
# A send-check rate that the service and echo both sustain in open loop on
# this machine (their knee was ~3,000 QPS): latency when nothing queues.
FIXED_CHECK_QPS = 2000
# Paced rates for CheckMessaging's open-loop knee: the highest at which its
# p99 stays under the 2 ms target, against the closed-loop max.
CHECK_SWEEP_QPS = (2500, 3000, 3500, 4000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds all processes spent busy since boot (every core)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _memory(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    target: str
    log: Path
    also: list[int] = field(default_factory=list)  # more processes serving the same port

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_s(self) -> float:
        return sum(_cpu_s(pid) for pid in (self.pid, *self.also))


@contextmanager
def _server(name: str, argv: list[str], port: int, logs: Path, ready: str) -> Iterator[Proc]:
    """Start a server process and wait until it prints ``ready``."""
    log = logs / f"{name}.log"
    with open(log, "w") as err:
        popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc = Proc(name, popen, f"127.0.0.1:{port}", log)
    try:
        assert popen.stdout is not None
        deadline = time.monotonic() + 300
        while True:
            line = popen.stdout.readline()
            if ready in line:
                break
            if (not line and popen.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {log}")
        yield proc
    finally:
        popen.terminate()
        try:
            popen.wait(15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


@dataclass
class Run:
    qps: float
    p50: float
    p99: float
    errors: dict[str, int]
    server_cpu_us: float  # server CPU per request
    other_cpu: float  # CPU other processes used, in cores (0..2)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


class Bench:
    def __init__(self, snapshot: Path, out: Path, duration: float, repeats: int, concurrency: int,
                 verbose: bool) -> None:
        self.snapshot = snapshot
        self.out = out
        self.duration = duration
        self.repeats = repeats
        self.concurrency = concurrency
        self.verbose = verbose
        self.runs: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def load(self, server: Proc, method: str, *, qps: float | None = None, duration: float | None = None,
             concurrency: int | None = None, label: str = "") -> Run:
        argv = [PY, "-m", "service.cli", "probe", "load", "--target", server.target, "--method", method,
                "--snapshot", str(self.snapshot), "--duration", str(duration or self.duration),
                "--concurrency", str(concurrency or self.concurrency), "--json", "--quiet", "--timeout", "2",
                "--seed", str(len(self.runs) + 1)]
        if server.also:  # several processes on one port: they share out connections
            argv += ["--channels", str(4 * (1 + len(server.also)))]
        if qps:
            argv += ["--qps", f"{qps:.0f}"]
        cpu0, busy0, kids0 = server.cpu_s(), _machine_busy_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
        wall0 = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.monotonic() - wall0
        if done.returncode != 0 and not done.stdout.strip().startswith("{"):
            raise RuntimeError(f"load generator failed: {done.stderr.strip()}")
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = server.cpu_s() - cpu0
        client_cpu = (kids.ru_utime - kids0.ru_utime) + (kids.ru_stime - kids0.ru_stime)
        other = max(_machine_busy_s() - busy0 - server_cpu - client_cpu, 0.0) / wall
        result = json.loads(done.stdout)
        lat = result["latency_ms"]
        run = Run(result["qps"], lat.get("p50", float("nan")), lat.get("p99", float("nan")), result["errors"],
                  server_cpu / max(result["requests"], 1) * 1e6, other, result)
        self.runs.append({"server": server.name, "method": method, "label": label, "qps_target": qps,
                          "server_cpu_us": run.server_cpu_us, "other_cpu_cores": other,
                          "client_cpu_s": client_cpu, **result})
        if self.verbose:
            self.say(f"    {server.name:<22} {method:<11} {label:<6} qps {run.qps:>7,.0f}  p50 {run.p50:6.2f} ms  "
                     f"p99 {run.p99:6.2f} ms  server {run.server_cpu_us:5.0f} us/req  "
                     f"others {other:.2f} cores  errors {sum(run.errors.values())}")
        return run

    def background(self, server: Proc, method: str, duration: float, concurrency: int) -> subprocess.Popen[str]:
        """A load generator left running (closed loop) while others measure."""
        argv = [PY, "-m", "service.cli", "probe", "load", "--target", server.target, "--method", method,
                "--snapshot", str(self.snapshot), "--duration", str(duration), "--concurrency", str(concurrency),
                "--json", "--quiet", "--timeout", "2", "--seed", "99"]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})

    def repeat(self, server: Proc, method: str, **kw: Any) -> list[Run]:
        return [self.load(server, method, **kw) for _ in range(self.repeats)]


def _median(runs: list[Run], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in runs))


def in_process_cpu(snapshot: Path, repeats: int, calls: dict[str, int] | None = None) -> dict[str, float]:
    """CPU microseconds per call of the servicer methods, called directly in
    this process (median of ``repeats`` runs of ``calls[method]`` calls
    each), and of the suggestion pipeline alone."""
    import gc
    import logging

    from graph.clock import SystemClock
    from service.cli.load import LoadSpec, build_requests, read_user_ids
    from service.server.config import ServerConfig
    from service.server.logs import JsonFormatter
    from service.server.server import build_safety
    from service.server.state import ServingState
    from service.servicers import SuggestionServicer
    from service.servicers.safety import SafetyServicer

    calls = calls or {"check": 4000, "batch-check": 500, "suggest": 1000}
    config = ServerConfig(snapshot=snapshot)
    clock = SystemClock()
    state = ServingState.load(snapshot, config.graph, clock, safety=build_safety(config, clock))
    gc.freeze()  # as the server does once it has loaded
    users = read_user_ids(snapshot=snapshot)
    parse = {"check": safety_service_pb2.CheckMessagingRequest.FromString,
             "batch-check": safety_service_pb2.BatchCheckMessagingRequest.FromString,
             "suggest": suggestion_service_pb2.SuggestContactsRequest.FromString}
    requests = {m: [parse[m](raw) for raw in build_requests(LoadSpec("-", users, method=m, seed=1))] for m in calls}
    suggestions = SuggestionServicer(lambda: state, config)
    safety = SafetyServicer(lambda: state)
    handler = {"check": safety.CheckMessaging, "batch-check": safety.BatchCheckMessaging,
               "suggest": suggestions.SuggestContacts}
    pipeline_s = [0.0]
    suggest = state.pipeline.suggest

    def timed_suggest(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return suggest(*args, **kwargs)
        finally:
            pipeline_s[0] += time.process_time() - started

    state.pipeline.suggest = timed_suggest  # type: ignore[method-assign]
    log_handler = logging.FileHandler(os.devnull)
    log_handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(log_handler)
    root.setLevel(logging.INFO)
    out: dict[str, float] = {}
    try:
        offset = 0
        for method, n in calls.items():
            fn, reqs = handler[method], requests[method]
            for r in reqs[: n // 4]:  # warm-up
                fn(r, None)
            runs, pipeline_runs = [], []
            for _ in range(repeats):
                pipeline_s[0] = 0.0
                started = time.process_time()
                for i in range(n):
                    fn(reqs[(offset + i) % len(reqs)], None)
                runs.append((time.process_time() - started) / n * 1e6)
                pipeline_runs.append(pipeline_s[0] / n * 1e6)
                offset += n
            out[method] = float(statistics.median(runs))
            if method == "suggest":
                out["suggest pipeline"] = float(statistics.median(pipeline_runs))
    finally:
        root.removeHandler(log_handler)
        root.setLevel(old_level)
        log_handler.close()
        state.pipeline.suggest = suggest  # type: ignore[method-assign]
    return out


def capture_responses(target: str, snapshot: Path, out: Path) -> dict[str, int]:
    """Real responses to send back from the echo server: a full page of 20
    suggestions, one check, one 50-recipient batch. Returns their sizes."""
    out.mkdir(parents=True, exist_ok=True)
    ids = np.load(snapshot / "ids.ext.npy", mmap_mode="r")
    rng = np.random.default_rng(5)
    sizes: dict[str, int] = {}
    with grpc.insecure_channel(target) as channel:
        suggest = channel.unary_unary("/contactgraph.v1.SuggestionService/SuggestContacts")
        for user in ids[rng.integers(0, ids.shape[0], 200)].tolist():
            raw = suggest(suggestion_service_pb2.SuggestContactsRequest(
                user_id=int(user), page_size=20, surface=surface_pb2.Surface.Value("SURFACE_NEW_CONTACTS")
            ).SerializeToString(), timeout=10)
            if len(suggestion_service_pb2.SuggestContactsResponse.FromString(raw).suggestions) == 20:
                break
        (out / "suggest.bin").write_bytes(raw)
        pair = ids[rng.integers(0, ids.shape[0], 51)].tolist()
        check = channel.unary_unary("/contactgraph.v1.SafetyService/CheckMessaging")
        raw_check = check(safety_service_pb2.CheckMessagingRequest(
            sender_id=int(pair[0]), recipient_id=int(pair[1])).SerializeToString(), timeout=10)
        (out / "check.bin").write_bytes(raw_check)
        batch = channel.unary_unary("/contactgraph.v1.SafetyService/BatchCheckMessaging")
        raw_batch = batch(safety_service_pb2.BatchCheckMessagingRequest(
            sender_id=int(pair[0]), recipient_ids=[int(u) for u in pair[1:]]).SerializeToString(), timeout=10)
        (out / "batch-check.bin").write_bytes(raw_batch)
    for name in ("suggest.bin", "check.bin", "batch-check.bin"):
        sizes[name] = (out / name).stat().st_size
    return sizes


def _row(figure: str, measured: str, target: str, baseline: str, ratio: float | None, ok: bool | None) -> list[str]:
    return [figure, measured, target, baseline, f"{ratio:.2f}" if ratio is not None else "-",
            {True: "yes", False: "NO", None: "-"}[ok]]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=20_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (medians)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight for max-QPS runs")
    parser.add_argument("--skip-designs", action="store_true", help="only the production design and echo")
    parser.add_argument("--quiet", action="store_true", help="no per-run lines")
    parser.add_argument("--skip-in-process", action="store_true", help="no in-process CPU figures")
    args = parser.parse_args(argv)

    snapshot = ensure_snapshot(args.users, args.edges).resolve()
    work = snapshot.parent
    logs = work / "serving-logs"
    logs.mkdir(exist_ok=True)
    bench = Bench(snapshot, work, args.duration, args.repeats, args.concurrency, not args.quiet)
    load_before = os.getloadavg()
    started = time.monotonic()
    results: dict[str, Any] = {"users": args.users, "edges": args.edges, "repeats": args.repeats,
                               "duration_s": args.duration, "concurrency": args.concurrency,
                               "loadavg_before": load_before}
    in_process: dict[str, float] = {}
    if not args.skip_in_process:
        bench.say("in process: CPU per servicer call")
        in_process = in_process_cpu(snapshot, args.repeats)
        results["in_process_cpu_us"] = in_process
    serve = [PY, "-m", "service.cli", "serve", "--snapshot", str(snapshot), "--no-wal", "--log-level", "INFO"]
    responses = work / "echo-responses"

    def echo_argv(mode: str, port: int) -> list[str]:
        return [PY, "-m", "tests.bench.serving_servers", "echo", "--port", str(port), "--mode", mode.split("+")[0],
                "--responses", str(responses), *(["--interceptor", "--workers", "2"] if "+" in mode else [])]

    # Every server runs at once (idle ones cost nothing) and runs alternate
    # between them, so that whatever else the machine does falls on all
    # designs alike.
    PROD = "threaded, 2 workers (default)"
    REPLICAS = "2 read-only processes, one port"
    with ExitStack() as stack:
        def start(name: str, argv_of: Any, ready: str) -> Proc:
            port = _free_port()
            return stack.enter_context(_server(name, argv_of(port), port, logs, ready))

        bench.say("starting servers")
        services = {PROD: start("service-threaded-2", lambda port: [*serve, "--port", str(port)],
                                "contactgraph serving")}
        results["message_sizes"] = sizes = capture_responses(services[PROD].target, snapshot, responses)
        if not args.skip_designs:
            services["threaded, 8 workers"] = start(
                "service-threaded-8", lambda port: [*serve, "--port", str(port), "--workers", "8"],
                "contactgraph serving")
            services["grpc.aio, inline on the loop"] = start(
                "service-aio-inline", lambda port: [PY, "-m", "tests.bench.serving_servers", "aio-service",
                                                    "--port", str(port), "--snapshot", str(snapshot)], "ready on")
            # Two read-only processes on one port: the ceiling of a design
            # with one writer and followers (not built; see the README).
            shared = _free_port()
            replicas = [stack.enter_context(_server(
                f"service-replica-{i}", [PY, "-m", "tests.bench.serving_servers", "replica", "--port", str(shared),
                                         "--snapshot", str(snapshot)], shared, logs, "ready on")) for i in range(2)]
            services[REPLICAS] = Proc("service-replicas-2", replicas[0].popen, replicas[0].target,
                                      replicas[0].log, also=[r.pid for r in replicas[1:]])
        echoes = {mode: start(f"echo-{mode}", lambda port, mode=mode: echo_argv(mode, port), "ready on")
                  for mode in ("sync", "aio", "sync+interceptor")}
        prod = services[PROD]
        bench.say("warm-up (page the snapshot in)")
        for server in services.values():
            bench.load(server, "suggest", duration=4, label="warmup")
        bench.load(prod, "check", duration=2, label="warmup")
        for server in echoes.values():
            bench.load(server, "suggest", duration=1, label="warmup")
        bench.runs.clear()

        top: dict[str, list[Run]] = {}
        bench.say("max QPS, closed loop")
        for _ in range(args.repeats):
            for name, server in [*services.items(), *(("echo " + m, s) for m, s in echoes.items())]:
                top.setdefault(name, []).append(bench.load(server, "suggest", label="max"))
            top.setdefault("check", []).append(bench.load(prod, "check", label="max"))
            top.setdefault("batch", []).append(bench.load(prod, "batch-check", label="max"))
            top.setdefault("echo check", []).append(bench.load(echoes["sync"], "check", label="max"))
        at70: dict[str, list[Run]] = {}
        bench.say("latency at 70% of each one's max QPS")
        for _ in range(args.repeats):
            for name, server in services.items():
                at70.setdefault(name, []).append(
                    bench.load(server, "suggest", qps=0.7 * _median(top[name], "qps"), label="70%"))
            at70.setdefault("check", []).append(
                bench.load(prod, "check", qps=0.7 * _median(top["check"], "qps"), label="70%"))
            at70.setdefault("batch", []).append(
                bench.load(prod, "batch-check", qps=0.7 * _median(top["batch"], "qps"), label="70%"))
            # The same target on a server that does no work: what this
            # machine's gRPC stack and load generator allow at all.
            at70.setdefault("echo check", []).append(
                bench.load(echoes["sync"], "check", qps=0.7 * _median(top["echo check"], "qps"), label="70%"))
        bench.say(f"CheckMessaging at a fixed {FIXED_CHECK_QPS:,} QPS (open loop), service and echo")
        fixed: dict[str, list[Run]] = {}
        for _ in range(args.repeats):
            fixed.setdefault("check", []).append(bench.load(prod, "check", qps=FIXED_CHECK_QPS, label="fixed"))
            fixed.setdefault("echo check", []).append(
                bench.load(echoes["sync"], "check", qps=FIXED_CHECK_QPS, label="fixed"))
        bench.say(f"CheckMessaging paced at {', '.join(f'{q:,}' for q in CHECK_SWEEP_QPS)} QPS")
        sweep: dict[int, list[Run]] = {q: [] for q in CHECK_SWEEP_QPS}
        for _ in range(args.repeats):
            for q in CHECK_SWEEP_QPS:
                sweep[q].append(bench.load(prod, "check", qps=q, label="sweep"))
        bench.say("CheckMessaging at 200 QPS while a SuggestContacts flood (64 in flight) runs")
        mixed: list[Run] = []
        flood_errors: dict[str, int] = {}
        for _ in range(args.repeats):
            flood = bench.background(prod, "suggest", args.duration + 2, 64)
            time.sleep(1.0)
            mixed.append(bench.load(prod, "check", qps=200, concurrency=8, label="flood"))
            out, _ = flood.communicate(timeout=120)
            for code, n in json.loads(out)["errors"].items():
                flood_errors[code] = flood_errors.get(code, 0) + n
        memory = _memory(prod.pid)
        if REPLICAS in services:
            replica_rss = sum(_memory(pid).get("VmRSS", 0) for pid in (services[REPLICAS].pid,
                                                                        *services[REPLICAS].also))
            results["replicas_rss"] = replica_rss

    designs = {name: {"max_qps": _median(top[name], "qps"), "p50_at_70_ms": _median(at70[name], "p50"),
                      "p99_at_70_ms": _median(at70[name], "p99"),
                      "server_cpu_us": _median(top[name], "server_cpu_us"),
                      "other_cpu_cores": _median(top[name] + at70[name], "other_cpu")}
               for name in services}
    echo = {mode: {"max_qps": _median(top["echo " + mode], "qps"),
                   "server_cpu_us": _median(top["echo " + mode], "server_cpu_us"),
                   "other_cpu_cores": _median(top["echo " + mode], "other_cpu")} for mode in echoes}
    def lag(runs: list[Run]) -> float:
        """Median of the paced runs' p99 send lag: how late the load
        generator sent calls. Past a few ms it, not the server, set the
        latency (both share the two cores)."""
        return float(statistics.median(r.raw.get("schedule_lag_p99_ms") or 0.0 for r in runs))

    check = {"max_qps": _median(top["check"], "qps"), "p50_at_70_ms": _median(at70["check"], "p50"),
             "p99_at_70_ms": _median(at70["check"], "p99"), "server_cpu_us": _median(top["check"], "server_cpu_us"),
             "echo_max_qps": _median(top["echo check"], "qps"), "send_lag_p99_at_70_ms": lag(at70["check"]),
             "echo_p99_at_70_ms": _median(at70["echo check"], "p99"),
             "echo_send_lag_p99_at_70_ms": lag(at70["echo check"]),
             "p99_at_fixed_ms": _median(fixed["check"], "p99"),
             "echo_p99_at_fixed_ms": _median(fixed["echo check"], "p99"),
             "server_cpu_us_at_fixed": _median(fixed["check"], "server_cpu_us"),
             "echo_server_cpu_us_at_fixed": _median(fixed["echo check"], "server_cpu_us"),
             "p99_by_paced_qps": {q: _median(runs, "p99") for q, runs in sweep.items()}}
    under_target = [q for q in (FIXED_CHECK_QPS, *CHECK_SWEEP_QPS)
                    if (check["p99_at_fixed_ms"] if q == FIXED_CHECK_QPS else check["p99_by_paced_qps"][q]) < 2]
    check["knee_qps"] = max(under_target, default=0)
    batch = {"max_qps": _median(top["batch"], "qps"), "p50_at_70_ms": _median(at70["batch"], "p50"),
             "p99_at_70_ms": _median(at70["batch"], "p99"), "server_cpu_us": _median(top["batch"], "server_cpu_us"),
             "send_lag_p99_at_70_ms": lag(at70["batch"])}
    flood_check = {"p50_ms": _median(mixed, "p50"), "p99_ms": _median(mixed, "p99"),
                   "errors": sum(sum(r.errors.values()) for r in mixed), "flood_errors": flood_errors}
    results.update({"designs": designs, "echo": echo, "check": check, "batch_check_50": batch,
                    "check_under_flood": flood_check, "memory": memory, "elapsed_s": time.monotonic() - started,
                    "loadavg_after": os.getloadavg(), "runs": bench.runs})

    # --- report -----------------------------------------------------------------
    p = designs[PROD]
    ceiling = echo["sync"]["max_qps"]
    ratio = p["max_qps"] / ceiling
    rss = float(memory.get("VmRSS", 0))
    rows = [
        _row("echo max QPS (sync, same sizes)", f"{ceiling:,.0f}", "ceiling", f"{BASELINE_ECHO_QPS:,.0f}",
             ceiling / BASELINE_ECHO_QPS, None),
        _row("SuggestContacts max QPS", f"{p['max_qps']:,.0f}", f">= {0.5 * ceiling:,.0f} (50% echo)",
             f"{BASELINE_SERVICE_QPS:,.0f}", ratio, ratio >= 0.5),
        _row("SuggestContacts p99 @ 70% max", f"{p['p99_at_70_ms']:.2f} ms", "< 10 ms", "-",
             p["p99_at_70_ms"] / 10, p["p99_at_70_ms"] < 10),
        _row("RSS serving process", f"{rss / GIB:.2f} GiB", "< 3 GiB", "-", rss / (3 * GIB), rss < 3 * GIB),
        _row("CheckMessaging max QPS", f"{check['max_qps']:,.0f}", "-", f"echo {check['echo_max_qps']:,.0f}",
             check["max_qps"] / max(check["echo_max_qps"], 1.0), None),
        _row("CheckMessaging p99 @ 70% max", f"{check['p99_at_70_ms']:.2f} ms", "< 2 ms",
             f"echo {check['echo_p99_at_70_ms']:.2f} ms @ 70% of its max",
             check["p99_at_70_ms"] / max(check["echo_p99_at_70_ms"], 1e-9), check["p99_at_70_ms"] < 2),
        _row(f"CheckMessaging p99 @ {FIXED_CHECK_QPS:,} QPS", f"{check['p99_at_fixed_ms']:.2f} ms", "-",
             f"echo {check['echo_p99_at_fixed_ms']:.2f} ms",
             check["p99_at_fixed_ms"] / max(check["echo_p99_at_fixed_ms"], 1e-9), None),
        _row("CheckMessaging: highest paced rate with p99 < 2 ms", f"{check['knee_qps']:,}", "-",
             f"max {check['max_qps']:,.0f} (closed loop)", check["knee_qps"] / max(check["max_qps"], 1.0), None),
        _row("BatchCheckMessaging(50) p99 @ 70% max", f"{batch['p99_at_70_ms']:.2f} ms", "< 5 ms", "-",
             batch["p99_at_70_ms"] / 5, batch["p99_at_70_ms"] < 5),
        _row("CheckMessaging p99 @ 200 QPS under a suggest flood", f"{flood_check['p99_ms']:.2f} ms",
             "answers, 0 errors", "-", None, flood_check["errors"] == 0),
    ]
    print(f"\nserving bench: {args.users:,} users / {args.edges:,} edges; {args.repeats} runs per figure "
          f"(medians), {args.duration:g} s each, alternating between servers; max-QPS runs at "
          f"{args.concurrency} in flight\n")
    print(_table(["figure", "measured", "target", "baseline", "ratio", "ok"], rows))
    print(f"\nSuggestContacts {p['max_qps']:,.0f} QPS / echo {ceiling:,.0f} QPS = {ratio:.2f}; "
          f"CheckMessaging max {check['max_qps']:,.0f} QPS, p50 @70% {check['p50_at_70_ms']:.2f} ms; "
          f"BatchCheckMessaging(50) max {batch['max_qps']:,.0f} QPS, p50 @70% {batch['p50_at_70_ms']:.2f} ms; "
          f"under the flood: CheckMessaging p50 {flood_check['p50_ms']:.2f} ms, {flood_check['errors']} errors, "
          f"flood refused {flood_errors or 'nothing'}")
    print(f"load generator send lag p99 at 70%: CheckMessaging {check['send_lag_p99_at_70_ms']:.2f} ms, "
          f"BatchCheckMessaging(50) {batch['send_lag_p99_at_70_ms']:.2f} ms (calls sent that late were already "
          "late when they left the client)")
    print(f"echo at 70% of its own max: p99 {check['echo_p99_at_70_ms']:.2f} ms, send lag p99 "
          f"{check['echo_send_lag_p99_at_70_ms']:.2f} ms; at a fixed {FIXED_CHECK_QPS:,} QPS (open loop) the server "
          f"spent {check['server_cpu_us_at_fixed']:,.0f} us of CPU per check, "
          f"echo {check['echo_server_cpu_us_at_fixed']:,.0f} us "
          f"(closed loop at max: {check['server_cpu_us']:,.0f} us)")
    print("CheckMessaging p99 by paced rate: " + ", ".join(
        f"{q:,} QPS {ms:.2f} ms" for q, ms in [(FIXED_CHECK_QPS, check["p99_at_fixed_ms"]),
                                              *check["p99_by_paced_qps"].items()]))
    if in_process:
        print("in process (no gRPC), CPU per call: " + ", ".join(
            f"{name} {us:,.0f} us" for name, us in in_process.items()))
    print(f"response sizes (bytes): {sizes}; memory: " +
          ", ".join(f"{k} {v / GIB:.2f} GiB" for k, v in memory.items()) +
          (f"; the two read-only processes: VmRSS {results['replicas_rss'] / GIB:.2f} GiB in all (the snapshot's "
           "mapped pages counted in each)" if "replicas_rss" in results else ""))
    overhead = echo["sync+interceptor"]["server_cpu_us"] - echo["sync"]["server_cpu_us"]
    print(f"the serving interceptor (lanes, deadlines, request id, metrics) costs {overhead:.0f} us of server CPU "
          f"per call (echo {echo['sync']['server_cpu_us']:.0f} -> {echo['sync+interceptor']['server_cpu_us']:.0f})")
    design_rows = [[name, f"{d['max_qps']:,.0f}", f"{d['max_qps'] / ceiling:.2f}", f"{d['p50_at_70_ms']:.2f}",
                    f"{d['p99_at_70_ms']:.2f}", f"{d['server_cpu_us']:,.0f}", f"{d['other_cpu_cores']:.2f}"]
                   for name, d in designs.items()]
    design_rows += [[f"echo ({mode})", f"{e['max_qps']:,.0f}", f"{e['max_qps'] / ceiling:.2f}", "-", "-",
                     f"{e['server_cpu_us']:,.0f}", f"{e['other_cpu_cores']:.2f}"] for mode, e in echo.items()]
    print("\nconcurrency designs, SuggestContacts page 20:\n")
    print(_table(["design", "max QPS", "/ echo", "p50 @70% ms", "p99 @70% ms", "server CPU us/req",
                  "other procs (cores)"], design_rows))
    others = statistics.median(r["other_cpu_cores"] for r in bench.runs) if bench.runs else 0.0
    print(f"\nother processes used a median {others:.2f} of the 2 cores during the runs "
          f"(load average {load_before[0]:.1f} before, {results['loadavg_after'][0]:.1f} after); "
          f"{results['elapsed_s']:.0f} s in all. Raw runs: {work / 'serving-results.json'}")
    (work / "serving-results.json").write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
