"""Durability benchmark: ApplyEvents throughput with the write-ahead log on
(fsync on) against the same server without a log, and start-up time with a
snapshot plus N logged events to replay.

    .venv/bin/python -m tests.bench.durability_bench [--events 1000000] [--seconds 5]

The server is a real `contactgraph serve` subprocess; clients are
``--clients`` threads spread over ``--client-procs`` processes (one Python
process cannot feed the server fast enough on its own), each sending
batches of ``--batch`` follows and interactions with unique event ids.
Prints a table: figure | measured | target | baseline | ratio."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from contactgraph.v1 import graph_service_pb2, wal_record_pb2
from graph.snapshot import read_manifest
from service.durability.wal import WriteAheadLog
from service.server.config import WalConfig
from tests.support.durability import build_snapshot, follow, message, request
from tests.support.server import ServerProcess

THROUGHPUT_TARGET = 50_000.0
STARTUP_TARGET_S = 30.0
STARTUP_TARGET_EVENTS = 1_000_000


def _requests(tag: str, n_requests: int, batch: int, n_users: int,
              seed: int) -> list[graph_service_pb2.ApplyEventsRequest]:
    rng = random.Random(seed)
    out = []
    for r in range(n_requests):
        events = []
        for i in range(batch):
            a, b = rng.sample(range(1, n_users + 1), 2)
            eid = f"{tag}-{r}-{i}"
            events.append(follow(eid, a, b) if i % 4 == 0 else message(eid, a, b))
        out.append(request(events))
    return out


def _client_proc(target: str, tag: str, threads: int, n_requests: int, batch: int, n_users: int,
                 seconds: float, ready: mp.Queue[str], go: Any, results: mp.Queue[tuple[int, int, float]]) -> None:
    """One client process: builds its requests, says ``ready``, waits for
    ``go``, then ``threads`` threads send for ``seconds``; puts (events
    acknowledged, failed calls, seconds until the last answer) on
    ``results``."""
    per_thread = [_requests(f"{tag}-{t}", n_requests, batch, n_users, hash((tag, t)) & 0xFFFF) for t in range(threads)]
    counts = [[0, 0, 0] for _ in range(threads)]
    channels = [grpc.insecure_channel(target) for _ in range(threads)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=60)
    ready.put(tag)
    go.wait()
    started = time.time()
    stop = started + seconds

    # Serialized up front: the load generator shares the server's two cores,
    # and every microsecond it spends is one the server cannot.
    payloads = [[req.SerializeToString() for req in reqs] for reqs in per_thread]

    def run(k: int) -> None:
        apply_events = channels[k].unary_unary(
            "/contactgraph.v1.GraphService/ApplyEvents", request_serializer=None,
            response_deserializer=graph_service_pb2.ApplyEventsResponse.FromString)
        for req in payloads[k]:
            if time.time() >= stop:
                break
            try:
                response = apply_events(req, timeout=30)
                counts[k][0] += response.applied + response.duplicates
                counts[k][1] += 1
            except grpc.RpcError:
                counts[k][2] += 1

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for channel in channels:
        channel.close()
    results.put((sum(c[0] for c in counts), sum(c[2] for c in counts), time.time() - started))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(snapshot: Path, work: Path, *, wal: bool, clients: int, procs: int, batch: int, seconds: float,
               n_users: int, expected_rate: float) -> tuple[float, int, float]:
    """Acknowledged events per second over ``seconds``, failed calls, and
    the server's CPU seconds over the run (on a shared machine, events per
    server CPU-second says what the server could do with a core of its
    own)."""
    args = ("--wal-dir", str(work / "wal")) if wal else ("--no-wal",)
    shutil.rmtree(work / "wal", ignore_errors=True)
    server = ServerProcess(snapshot, work / ("server-wal.log" if wal else "server-nowal.log"), *args).start()
    try:
        ctx = mp.get_context("spawn")
        results: mp.Queue[tuple[int, int, float]] = ctx.Queue()
        per_proc = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
        # Enough requests for each thread never to run dry at twice the expected rate.
        n_requests = int(2 * expected_rate * seconds / batch / clients) + 20
        ready: mp.Queue[str] = ctx.Queue()
        go = ctx.Event()
        tag = f"{'wal' if wal else 'nowal'}-{time.time_ns()}"
        workers = [ctx.Process(target=_client_proc, args=(server.target, f"{tag}-{i}", n, n_requests, batch,
                                                         n_users, seconds, ready, go, results))
                   for i, n in enumerate(per_proc) if n]
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=600)
        assert server.proc is not None
        pid = server.proc.pid
        go.set()
        cpu_start = _cpu_seconds(pid)
        time.sleep(seconds)
        cpu = _cpu_seconds(pid) - cpu_start
        totals = [results.get(timeout=600) for _ in workers]
        for w in workers:
            w.join()
        events = sum(t[0] for t in totals)
        failures = sum(t[1] for t in totals)
        return events / max(t[2] for t in totals), failures, cpu
    finally:
        server.stop()
        for line in server.log_path.read_text().splitlines():
            if "WAL closed" in line:
                print("  server: " + json.loads(line)["msg"], flush=True)


def startup(snapshot: Path, work: Path, n_events: int, n_users: int) -> tuple[float, float, float]:
    """(seconds from spawn to serving with ``n_events`` in the log, the same
    with an empty log, seconds to write the log)."""
    wal_dir = work / "startup-wal"
    shutil.rmtree(wal_dir, ignore_errors=True)
    empty_dir = work / "startup-empty-wal"
    shutil.rmtree(empty_dir, ignore_errors=True)
    watermark = int(read_manifest(snapshot)["watermark"])
    t = time.perf_counter()
    wal = WriteAheadLog.open(WalConfig(wal_dir, fsync=False))
    rng = random.Random(11)
    seq = watermark + 1
    batch = 100
    now = time.time()
    while seq <= watermark + n_events:
        n = min(batch, watermark + n_events - seq + 1)
        events = []
        for i in range(n):
            a, b = rng.sample(range(1, n_users + 1), 2)
            eid = f"replay-{seq + i}"
            events.append(follow(eid, a, b) if i % 4 == 0 else message(eid, a, b))
        wal.append(wal_record_pb2.WalRecord(first_sequence=seq, server_time=now, events=events))
        seq += n
    wal.close()
    written = time.perf_counter() - t

    def timed(directory: Path, label: str) -> float:
        t0 = time.perf_counter()
        server = ServerProcess(snapshot, work / f"startup-{label}.log", "--wal-dir", str(directory)).start(
            timeout_s=600)
        elapsed = time.perf_counter() - t0
        server.stop()
        return elapsed

    return timed(wal_dir, "replay"), timed(empty_dir, "empty"), written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=STARTUP_TARGET_EVENTS, help="WAL events replayed at start-up")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--users", type=int, default=20_000, help="users of the synthetic snapshot")
    parser.add_argument("--snapshot", type=Path, help="use this snapshot instead of building one")
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="durability-bench-") as tmp:
        work = Path(tmp)
        snapshot = args.snapshot
        if snapshot is None:
            t = time.perf_counter()
            snapshot = work / "snapshot"
            build_snapshot(snapshot, n_users=args.users)
            print(f"built a {args.users}-user synthetic snapshot in {time.perf_counter() - t:.1f}s", flush=True)
        n_users = int(read_manifest(snapshot)["counts"]["users"])
        common = {"clients": args.clients, "procs": args.client_procs, "batch": args.batch,
                  "seconds": args.seconds, "n_users": n_users, "expected_rate": THROUGHPUT_TARGET * 1.5}
        base_rate, base_fail, base_cpu = throughput(snapshot, work, wal=False, **common)
        print(f"no WAL: {base_rate:,.0f} events/s ({base_fail} failed calls, server CPU {base_cpu:.1f}s "
              f"of {args.seconds:.0f}s)", flush=True)
        wal_rate, wal_fail, wal_cpu = throughput(snapshot, work, wal=True, **common)
        print(f"WAL + fsync: {wal_rate:,.0f} events/s ({wal_fail} failed calls, server CPU {wal_cpu:.1f}s "
              f"of {args.seconds:.0f}s)", flush=True)
        per_cpu = wal_rate * args.seconds / wal_cpu if wal_cpu else 0.0
        base_per_cpu = base_rate * args.seconds / base_cpu if base_cpu else 0.0
        rows = [(f"ApplyEvents, WAL + fsync, {args.clients} clients x {args.batch} (events/s)",
                 f"{wal_rate:,.0f}", f">= {THROUGHPUT_TARGET:,.0f}", f"{base_rate:,.0f} (no WAL)",
                 f"{wal_rate / base_rate:.2f}" if base_rate else "-"),
                ("  the same, per server CPU-second (events)", f"{per_cpu:,.0f}", "-",
                 f"{base_per_cpu:,.0f} (no WAL)", f"{per_cpu / base_per_cpu:.2f}" if base_per_cpu else "-")]
        if not args.skip_startup:
            with_log, without, written = startup(snapshot, work, args.events, n_users)
            print(f"wrote {args.events:,} WAL events in {written:.1f}s", flush=True)
            target = STARTUP_TARGET_S * args.events / STARTUP_TARGET_EVENTS
            rows.append((f"start-up, snapshot + {args.events:,} WAL events (s)", f"{with_log:.1f}",
                         f"< {target:.0f}" + ("" if args.events == STARTUP_TARGET_EVENTS else " (scaled)"),
                         f"{without:.1f} (empty WAL)", f"{with_log / without:.2f}" if without else "-"))
    _print_table(("figure", "measured", "target", "baseline", "ratio"), rows)
    return 0


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print()
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    sys.exit(main())
