"""A bounded load generator: ``contactgraph probe load`` and the serving
benchmark.

One client process, grpc.aio: ``concurrency`` coroutines share one channel
and send pre-serialised requests (the client spends its CPU on gRPC, not
on protobuf), either as fast as answers come back (closed loop) or paced
to a target rate (``qps``: request i is due at start + i/qps). Paced
latency is measured from when a request was *due*, not from when it was
sent: a stalled server delays the sends behind a slow answer, and timing
those from their late send would leave the stall out of the numbers
(coordinated omission). How late sends were is reported as
``schedule_lag_p99_ms``, and the time from the actual send as
``service_time_ms``. It stops
after ``duration_s`` or ``requests``, whichever comes first; requests in
the ``warmup_s`` before that are not counted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tabulate import tabulate

from contactgraph.v1 import safety_service_pb2, suggestion_service_pb2, surface_pb2
from service.server.tls import ClientTls

METHODS = {
    "suggest": "/contactgraph.v1.SuggestionService/SuggestContacts",
    "check": "/contactgraph.v1.SafetyService/CheckMessaging",
    "batch-check": "/contactgraph.v1.SafetyService/BatchCheckMessaging",
}
_DISTINCT_REQUESTS = 8192
# A method called without (de)serialisers: requests go out as the bytes
# build_requests made, replies come back as bytes (only the status counts).
_Call = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]


class LoadError(Exception):
    """A load that cannot run as asked: bad settings (exit code 2, USAGE);
    the subclasses below say when it is the data or the server."""


class LoadInputError(LoadError):
    """The user ids to sample cannot be read, or are too few (exit code 3,
    BAD_INPUT)."""


class LoadUnreachable(LoadError):
    """No server answers at the target (exit code 4, UNREACHABLE)."""


@dataclass(frozen=True)
class LoadSpec:
    target: str
    users: np.ndarray  # int64 external ids to sample from
    method: str = "suggest"
    concurrency: int = 8
    duration_s: float | None = 10.0
    requests: int | None = None
    qps: float | None = None
    warmup_s: float = 0.0
    timeout_s: float = 1.0
    page_size: int = 20
    recipients: int = 50
    request_id: str | None = None  # prefix: calls carry x-request-id PREFIX-<n>
    tls: ClientTls | None = None
    seed: int = 1
    path: str | None = None  # a method path overriding ``method`` (bench: echo servers)
    # Connections to spread the calls over: the kernel balances processes
    # that share a port (SO_REUSEPORT) by connection, not by call.
    channels: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise LoadError(f"unknown method {self.method!r}; one of {', '.join(METHODS)}")
        if self.concurrency < 1:
            raise LoadError("concurrency must be at least 1")
        if not 1 <= self.channels <= self.concurrency:
            raise LoadError("channels must be between 1 and the concurrency")
        if self.duration_s is None and self.requests is None:
            raise LoadError("give a duration or a number of requests: the load is bounded")
        if self.duration_s is not None and not self.duration_s > 0:
            raise LoadError("duration must be positive")
        if self.requests is not None and self.requests < 1:
            raise LoadError("requests must be at least 1")
        if self.qps is not None and not self.qps > 0:
            raise LoadError("qps must be positive")
        if self.users.shape[0] < 2:
            raise LoadInputError("need at least two user ids to sample from")


@dataclass
class LoadResult:
    method: str
    target: str
    concurrency: int
    target_qps: float | None
    elapsed_s: float
    requests: int
    ok: int
    errors: dict[str, int]
    qps: float
    latency_ms: dict[str, float]  # p50, p90, p99, p999, max, mean over OK answers
    schedule_lag_p99_ms: float | None = None
    # What latency_ms is timed from: "scheduled send" when paced (no
    # coordinated omission), "send" in a closed loop (the same thing there).
    latency_from: str = "send"
    service_time_ms: dict[str, float] = field(default_factory=dict)  # paced: from the actual send
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def table(self) -> str:
        lat = self.latency_ms
        rows = [
            ("method", self.method), ("target", self.target), ("concurrency", self.concurrency),
            ("target qps", f"{self.target_qps:,.0f}" if self.target_qps else "max (closed loop)"),
            ("elapsed", f"{self.elapsed_s:.1f} s"), ("requests", f"{self.requests:,}"), ("ok", f"{self.ok:,}"),
            ("qps", f"{self.qps:,.0f}"),
            ("latency from", "scheduled send time (no coordinated omission)"
             if self.latency_from == "scheduled send" else "send time (closed loop)"),
            *((f"latency {k}", f"{lat[k]:.2f} ms") for k in ("p50", "p90", "p99", "max") if k in lat),
        ]
        if self.schedule_lag_p99_ms is not None:
            rows.append(("send lag p99", f"{self.schedule_lag_p99_ms:.2f} ms"))
        if self.service_time_ms:
            rows.append(("service time p99", f"{self.service_time_ms['p99']:.2f} ms (from the actual send)"))
        if self.errors:
            rows += [(f"errors {code}", f"{n:,}") for code, n in sorted(self.errors.items())]
        else:
            rows.append(("errors", "none"))
        # Values are formatted above: tabulate only lays them out.
        return tabulate(rows, tablefmt="plain", disable_numparse=True)


def read_user_ids(snapshot: str | Path | None = None, users_file: str | Path | None = None) -> np.ndarray:
    """User ids (int64) from a snapshot directory's id map, or a file with
    one id per line (``#`` comments and blank lines skipped) or a .npy."""
    if (snapshot is None) == (users_file is None):
        raise LoadError("give user ids with either --snapshot DIR or --users-file FILE")
    if snapshot is not None:
        from graph.errors import SnapshotError
        from graph.snapshot import read_manifest

        try:
            read_manifest(Path(snapshot))
            return np.asarray(np.load(Path(snapshot) / "ids.ext.npy", mmap_mode="r"), np.int64)
        except (SnapshotError, OSError, ValueError) as err:
            raise LoadInputError(f"cannot read user ids from snapshot {snapshot}: {err}") from None
    path = Path(str(users_file))
    try:
        if path.suffix == ".npy":
            return np.asarray(np.load(path), np.int64)
        ids = [int(line.split("#", 1)[0]) for line in path.read_text().splitlines()
               if line.split("#", 1)[0].strip()]
    except (OSError, ValueError) as err:
        raise LoadInputError(f"cannot read user ids from {path}: {err}") from None
    return np.asarray(ids, np.int64)


def build_requests(spec: LoadSpec) -> list[bytes]:
    """Serialised requests for users sampled (seeded) from ``spec.users``."""
    rng = np.random.default_rng(spec.seed)
    users = spec.users
    n = _DISTINCT_REQUESTS
    pick = users[rng.integers(0, users.shape[0], n)]
    out: list[bytes] = []
    if spec.method == "suggest":
        surface = surface_pb2.SURFACE_NEW_CONTACTS
        for u in pick.tolist():
            out.append(suggestion_service_pb2.SuggestContactsRequest(
                user_id=u, page_size=spec.page_size, surface=surface).SerializeToString())
    elif spec.method == "check":
        other = users[rng.integers(0, users.shape[0], n)]
        for s, r in zip(pick.tolist(), other.tolist(), strict=True):
            out.append(safety_service_pb2.CheckMessagingRequest(
                sender_id=s, recipient_id=r if r != s else s + 1).SerializeToString())
    else:
        for s in pick.tolist():
            recipients = users[rng.integers(0, users.shape[0], spec.recipients)].tolist()
            out.append(safety_service_pb2.BatchCheckMessagingRequest(
                sender_id=s, recipient_ids=[r for r in recipients if r != s]).SerializeToString())
    return out


def _percentiles(ms: np.ndarray) -> dict[str, float]:
    if ms.shape[0] == 0:
        return {}
    p = np.percentile(ms, [50, 90, 99, 99.9])
    return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]), "p999": float(p[3]),
            "max": float(ms.max()), "mean": float(ms.mean())}


class _Progress:
    def __init__(self, stream: Any, every_s: float = 1.0) -> None:
        self.stream = stream
        self.every_s = every_s
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def show(self, elapsed: float, done: int, errors: int, recent_qps: float, recent_p99: float | None,
             final: bool = False) -> None:
        p99 = f"{recent_p99:.1f} ms" if recent_p99 is not None else "-"
        line = (f"{elapsed:6.1f}s  {done:>9,} requests  {recent_qps:>8,.0f} qps  p99 {p99:>9}  "
                f"errors {errors:,}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


async def _connect(channel: grpc.aio.Channel, timeout_s: float) -> bool:
    """Wait until the channel is ready; False as soon as connecting fails
    (nobody listening) or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    state = channel.get_state(try_to_connect=True)
    while state != grpc.ChannelConnectivity.READY:
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE or time.monotonic() >= deadline:
            return False
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), deadline - time.monotonic())
        except TimeoutError:
            return False
        state = channel.get_state(try_to_connect=True)
    return True


async def _run(spec: LoadSpec, progress: _Progress | None) -> LoadResult:
    requests = build_requests(spec)
    options = [("grpc.max_receive_message_length", 16 << 20)]
    if spec.channels > 1:
        # Channels to one target share a connection unless each has its own
        # subchannel pool.
        options.append(("grpc.use_local_subchannel_pool", 1))
    channels = []
    for _ in range(spec.channels):
        if spec.tls is not None:
            channels.append(grpc.aio.secure_channel(spec.target, spec.tls.credentials(),
                                                    options=options + spec.tls.options()))
        else:
            channels.append(grpc.aio.insecure_channel(spec.target, options=options))
    for channel in channels:
        if not await _connect(channel, 10.0):
            for c in channels:
                await c.close()
            raise LoadUnreachable(f"cannot reach {spec.target}: is the server running?")
    calls: list[_Call] = [channel.unary_unary(spec.path or METHODS[spec.method]) for channel in channels]
    latencies: list[float] = []  # from the scheduled send when paced
    service: list[float] = []  # from the actual send
    lags: list[float] = []
    codes: Counter[str] = Counter()
    recent: list[float] = []
    loop_time = time.perf_counter
    started = loop_time()
    measure_from = started + spec.warmup_s
    stop_at = measure_from + spec.duration_s if spec.duration_s is not None else float("inf")
    limit = spec.requests
    issued = 0  # requests sent (their index sets when a paced one is due)
    measured = 0  # requests sent after the warm-up
    counted = 0  # answers counted
    interval = 1.0 / spec.qps if spec.qps else 0.0
    prefix = spec.request_id

    async def worker(call: _Call) -> None:
        nonlocal issued, measured, counted
        while True:
            i = issued
            issued += 1
            lag = 0.0
            due = 0.0
            if interval:
                due = started + i * interval
                now = loop_time()
                if due > now:
                    await asyncio.sleep(due - now)
                else:
                    lag = now - due
            t0 = loop_time()
            # Paced: latency counts from when the request was due, so time
            # spent waiting behind a slow answer is not left out.
            t_from = due if interval else t0
            if t0 >= stop_at:
                return
            counts = t0 >= measure_from
            if counts:
                if limit is not None and measured >= limit:
                    return
                measured += 1
            metadata = (("x-request-id", f"{prefix}-{i}"),) if prefix else None
            try:
                await call(requests[i % len(requests)], timeout=spec.timeout_s, metadata=metadata)
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name if err.code() is not None else "UNKNOWN"
            if counts:
                t1 = loop_time()
                counted += 1
                codes[code] += 1
                if code == "OK":
                    latencies.append(t1 - t_from)
                    service.append(t1 - t0)
                    recent.append(t1 - t_from)
                if interval:
                    lags.append(lag)

    async def reporter() -> None:
        last_t, last_n = loop_time(), 0
        while True:
            await asyncio.sleep(progress.every_s if progress else 1.0)
            now = loop_time()
            if progress is not None:
                rq = (counted - last_n) / max(now - last_t, 1e-9)
                p99 = float(np.percentile(np.array(recent) * 1000, 99)) if recent else None
                errors = sum(n for c, n in codes.items() if c != "OK")
                progress.show(max(now - measure_from, 0.0), counted, errors, rq, p99)
            recent.clear()
            last_t, last_n = now, counted

    report = asyncio.ensure_future(reporter())
    try:
        await asyncio.gather(*(worker(calls[k % len(calls)]) for k in range(spec.concurrency)))
    finally:
        report.cancel()
        for channel in channels:
            await channel.close()
    elapsed = max(min(loop_time(), stop_at) - measure_from, 1e-9)
    ms = np.array(latencies) * 1000.0
    total = sum(codes.values())
    if progress is not None:
        progress.show(elapsed, total, total - codes.get("OK", 0), total / elapsed, None, final=True)
    return LoadResult(
        method=spec.method, target=spec.target, concurrency=spec.concurrency, target_qps=spec.qps,
        elapsed_s=round(elapsed, 3), requests=total, ok=codes.get("OK", 0),
        errors={c: n for c, n in codes.items() if c != "OK"}, qps=total / elapsed,
        latency_ms=_percentiles(ms),
        schedule_lag_p99_ms=float(np.percentile(np.array(lags) * 1000, 99)) if lags else None,
        latency_from="scheduled send" if interval else "send",
        service_time_ms=_percentiles(np.array(service) * 1000.0) if interval else {})


def run_load(spec: LoadSpec, progress_to: Any = None) -> LoadResult:
    """Run the load and return what it measured. ``progress_to``: a stream
    for a live line per second (None: silent)."""
    progress = _Progress(progress_to) if progress_to is not None else None
    return asyncio.run(_run(spec, progress))

