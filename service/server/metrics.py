"""Prometheus metrics, served over HTTP on their own port.

Each server has its own registry (tests run several servers in one
process). Per-call series are updated by the interceptor; the state of the
data (snapshot, graph size, write-ahead log) is read at scrape time by a
collector, so a snapshot swap shows up without anyone telling the metrics.

The standard gRPC server series (go-grpc-prometheus names and labels, so
stock gRPC dashboards work): ``grpc_server_handled_total{grpc_type,
grpc_service,grpc_method,grpc_code}``, ``grpc_server_handling_seconds
{grpc_type,grpc_service,grpc_method}``, ``grpc_server_started_total``,
``grpc_server_msg_received_total`` and ``grpc_server_msg_sent_total``.
``grpc_service`` is the full service name (``contactgraph.v1.SafetyService``)
and ``grpc_code`` is spelt as grpc-go spells it (``OK``, ``InvalidArgument``,
``Canceled``). Only unary calls are counted (the interceptor observes those);
the process and Python runtime series (``process_*``, ``python_*``) are there
too.

Our own series (all prefixed ``contactgraph_``):
- ``rpc_duration_seconds{method,code}``: histogram of server-side latency,
  rejections included, per status code;
- ``rpc_shed_total{lane,reason}``: calls refused or stopped by the overload
  and deadline guards (``overloaded``, ``queue_timeout``, ``deadline``,
  ``cancelled``, ``permission``);
- ``rpc_in_flight{lane}``, ``rpc_lane_capacity{lane}``: calls in each lane
  now (running or queued) and the most it takes;
- ``pipeline_abandoned_total{stage}``: suggestion pipelines stopped between
  stages because the caller gave up;
- ``candidates_total{source}``: candidates each source found;
- ``filtered_total{reason}``: candidates each safety reason removed;
- ``ranked_total``: candidates left after filtering;
- ``snapshot_info{snapshot_id}``, ``snapshot_built_timestamp_seconds``,
  ``snapshot_last_event_timestamp_seconds``,
  ``graph_last_event_timestamp_seconds`` (Unix times, not ages: an age is
  ``time() - ...`` in the query, and stays right when scrapes stop);
- ``graph_users``, ``graph_edges{kind}``, ``graph_overlay_edges``;
- ``wal_events_since_snapshot`` (what a restart would replay, i.e. how far
  the snapshot lags the log), ``wal_fsyncs_total``, ``wal_appends_total``,
  ``wal_fsync_seconds`` (count and sum of the group-commit fsyncs: the WAL
  keeps totals, not each fsync, so there are no buckets), ``graph_watermark``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Latency buckets in seconds: sub-millisecond resolution where the targets
# are (checks < 2 ms, suggestions < 10 ms), coarse above.
BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
           2.5, 5.0)

# grpc_code as grpc-go's codes.Code.String() spells it (go-grpc-prometheus
# labels with that, and stock dashboards match on it), keyed by the
# grpc.StatusCode name the interceptor passes.
GO_CODE_NAMES = {
    "OK": "OK", "CANCELLED": "Canceled", "UNKNOWN": "Unknown", "INVALID_ARGUMENT": "InvalidArgument",
    "DEADLINE_EXCEEDED": "DeadlineExceeded", "NOT_FOUND": "NotFound", "ALREADY_EXISTS": "AlreadyExists",
    "PERMISSION_DENIED": "PermissionDenied", "RESOURCE_EXHAUSTED": "ResourceExhausted",
    "FAILED_PRECONDITION": "FailedPrecondition", "ABORTED": "Aborted", "OUT_OF_RANGE": "OutOfRange",
    "UNIMPLEMENTED": "Unimplemented", "INTERNAL": "Internal", "UNAVAILABLE": "Unavailable", "DATA_LOSS": "DataLoss",
    "UNAUTHENTICATED": "Unauthenticated",
}


class _CallSeries:
    """The children one (method, code) pair updates, resolved once: the
    interceptor calls ``observe`` on every RPC."""

    __slots__ = ("duration", "handled", "handling", "received", "sent", "started")

    def __init__(self, metrics: ServerMetrics, method: str, code: str) -> None:
        short, _, name = method.partition("/")
        service = metrics.services.get(short, short)
        grpc_code = GO_CODE_NAMES.get(code, code)
        self.duration = metrics.duration.labels(method, code)
        self.handled = metrics.grpc_handled.labels("unary", service, name, grpc_code)
        self.handling = metrics.grpc_handling.labels("unary", service, name)
        self.started = metrics.grpc_started.labels("unary", service, name)
        self.received = metrics.grpc_msg_received.labels("unary", service, name)
        # A unary call sends its one response only when it succeeds; an
        # error status carries no message.
        self.sent = metrics.grpc_msg_sent.labels("unary", service, name) if code == "OK" else None


class ServerMetrics:
    """The per-call series of one server and the registry they live in.
    ``services`` are the full names of the services served
    (``contactgraph.v1.SafetyService``): the interceptor labels a call
    ``SafetyService/CheckMessaging``, and ``grpc_service`` wants the full
    name (a short name not in ``services`` is used as it is)."""

    def __init__(self, registry: CollectorRegistry | None = None, services: Iterable[str] = ()) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.services = {full.rsplit(".", 1)[-1]: full for full in services}
        r = self.registry
        # CPU, memory, open files, start time; Python version and GC.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.duration = Histogram("contactgraph_rpc_duration_seconds", "Server-side RPC latency by method and code.",
                                  ["method", "code"], buckets=BUCKETS, registry=r)
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.grpc_handled = Counter("grpc_server_handled_total",
                                    "Total number of RPCs completed on the server, regardless of success or failure.",
                                    [*grpc_labels, "grpc_code"], registry=r)
        self.grpc_handling = Histogram("grpc_server_handling_seconds",
                                       "Histogram of response latency (seconds) of gRPC that had been "
                                       "application-level handled by the server.",
                                       grpc_labels, buckets=BUCKETS, registry=r)
        # The interceptor sees a unary call once, when it ends: started is
        # counted then, so started - handled is always 0 here (for calls
        # in progress read contactgraph_rpc_in_flight).
        self.grpc_started = Counter("grpc_server_started_total",
                                    "Total number of RPCs started on the server (counted when they complete).",
                                    grpc_labels, registry=r)
        self.grpc_msg_received = Counter("grpc_server_msg_received_total",
                                         "Total number of RPC stream messages received on the server.",
                                         grpc_labels, registry=r)
        self.grpc_msg_sent = Counter("grpc_server_msg_sent_total",
                                     "Total number of gRPC stream messages sent by the server.",
                                     grpc_labels, registry=r)
        self.shed = Counter("contactgraph_rpc_shed_total",
                            "Calls refused or stopped by the overload, deadline and permission guards.",
                            ["lane", "reason"], registry=r)
        self.abandoned = Counter("contactgraph_pipeline_abandoned_total",
                                 "Pipelines stopped between stages because the caller gave up.", ["stage"], registry=r)
        self.candidates = Counter("contactgraph_candidates_total", "Candidates found, by source.", ["source"],
                                  registry=r)
        self.filtered = Counter("contactgraph_filtered_total", "Candidates removed, by safety reason.", ["reason"],
                                registry=r)
        self.ranked = Counter("contactgraph_ranked_total", "Candidates left after the safety filters.", registry=r)
        self.pre_rank_cut = Counter("contactgraph_pre_rank_cut_total",
                                    "Candidates the pre-rank cap kept from the ranker (Bounds.pre_rank_keep).",
                                    registry=r)
        self._children: dict[tuple[str, str], _CallSeries] = {}
        self._counters: dict[str, Any] = {}
        self._lock = threading.Lock()

    def observe(self, method: str, code: str, seconds: float) -> None:
        """One finished unary call: ``method`` as ``Service/Method`` (the
        service's short name), ``code`` a grpc.StatusCode name."""
        key = (method, code)
        series = self._children.get(key)
        if series is None:
            with self._lock:
                series = self._children.setdefault(key, _CallSeries(self, method, code))
        series.duration.observe(seconds)
        series.handling.observe(seconds)
        series.started.inc()
        series.received.inc()
        series.handled.inc()
        if series.sent is not None:
            series.sent.inc()

    def observe_counts(self, counts: Mapping[str, int]) -> None:
        """The pipeline's per-stage counts: ``source.<name>``,
        ``filter.<reason>``, ``pre_rank.cut`` and ``ranked``."""
        for key, n in counts.items():
            if not n:
                continue
            child = self._counters.get(key)
            if child is None:
                kind, _, name = key.partition(".")
                if kind == "source":
                    child = self.candidates.labels(name)
                elif kind == "filter":
                    child = self.filtered.labels(name)
                elif key == "ranked":
                    child = self.ranked
                elif key == "pre_rank.cut":
                    child = self.pre_rank_cut
                else:
                    continue
                self._counters[key] = child
            child.inc(n)


class StateCollector(Collector):
    """Reads the served state at scrape time. ``state`` returns the current
    ServingState (it changes on a snapshot swap); ``lanes`` returns
    {lane: (in flight, capacity)}; ``stream_applied`` the stream sequence
    applied (None without a stream log)."""

    def __init__(self, state: Callable[[], Any], lanes: Callable[[], Mapping[str, tuple[int, int]]],
                 wal: Callable[[], Any] | None = None, clock: Callable[[], float] = time.time,
                 stream_applied: Callable[[], int | None] | None = None) -> None:
        self._state = state
        self._stream_applied = stream_applied
        self._lanes = lanes
        self._wal = wal
        self._clock = clock

    def describe(self) -> Iterator[Any]:
        return iter(())  # unchecked collector: the families depend on the state

    def collect(self) -> Iterator[Any]:
        lanes = self._lanes()
        in_flight = GaugeMetricFamily("contactgraph_rpc_in_flight", "Calls in each lane now (running or queued).",
                                      labels=["lane"])
        capacity = GaugeMetricFamily("contactgraph_rpc_lane_capacity",
                                     "Most calls a lane takes at once (running + queued).", labels=["lane"])
        for lane, (now_in, cap) in lanes.items():
            in_flight.add_metric([lane], now_in)
            capacity.add_metric([lane], cap)
        yield in_flight
        yield capacity
        try:
            yield from self._state_metrics()
        except Exception:  # a scrape must never take the server down; log and go on
            log.exception("metrics: reading the served state failed")

    def _state_metrics(self) -> Iterator[Any]:
        state = self._state()
        now = self._clock()
        manifest: Mapping[str, Any] = state.snapshot.manifest
        snapshot_id = str(manifest.get("snapshot_id", ""))
        info = GaugeMetricFamily("contactgraph_snapshot_info", "The snapshot being served (value 1).",
                                 labels=["snapshot_id"])
        info.add_metric([snapshot_id], 1)
        yield info
        # Timestamps rather than ages (Prometheus convention): the age is
        # time() - value in the query. An old manifest without the field
        # reads as built now, as the age gauges it replaces did.
        created = float(manifest.get("created_time", now))
        yield GaugeMetricFamily("contactgraph_snapshot_built_timestamp_seconds",
                                "Unix time the served snapshot was built.", value=created)
        yield GaugeMetricFamily("contactgraph_snapshot_last_event_timestamp_seconds",
                                "Unix time of the newest event folded into the served snapshot (event time; 0 if "
                                "none).", value=float(manifest.get("last_event_time", created)))
        store = state.store
        yield GaugeMetricFamily("contactgraph_graph_last_event_timestamp_seconds",
                                "Unix time of the newest event in the served graph, live events included (event "
                                "time; 0 if none).", value=float(getattr(store, "last_event_time", 0.0)))
        yield GaugeMetricFamily("contactgraph_graph_users", "Users in the served graph.", value=store.n_rows)
        edges = GaugeMetricFamily("contactgraph_graph_edges", "Stored edges, by kind (friends are pairs).",
                                  labels=["kind"])
        for kind in ("follows", "blocks", "mutes"):
            relation = getattr(store, kind, None)
            if relation is not None:
                edges.add_metric([kind], relation.count())
        edges.add_metric(["friends"], store.friends.count() // 2)
        edges.add_metric(["interactions"], store.interactions.count())
        yield edges
        yield GaugeMetricFamily("contactgraph_graph_overlay_edges",
                                "Live changes not yet compacted into the base arrays.", value=store.overlay_size())
        watermark = int(getattr(store, "watermark", 0))
        yield GaugeMetricFamily("contactgraph_graph_watermark", "Sequence number of the last event applied.",
                                value=watermark)
        since = watermark - int(manifest.get("watermark", watermark))
        yield GaugeMetricFamily("contactgraph_wal_events_since_snapshot",
                                "Events applied after the snapshot's watermark: what a restart replays from the "
                                "write-ahead log, i.e. how far the snapshot lags the log.", value=max(since, 0))
        applied = self._stream_applied() if self._stream_applied is not None else None
        if applied is not None:
            yield GaugeMetricFamily("contactgraph_stream_applied_sequence",
                                    "The last sequence of the event stream (serve --log) this server applied: "
                                    "the watermark reads with x-min-watermark wait for.", value=applied)
        wal = self._wal() if self._wal is not None else None
        if wal is not None and hasattr(wal, "fsyncs"):
            # Read without the WAL's lock: count and sum may be one fsync
            # apart in a scrape, which a rate over minutes cannot see.
            fsyncs = int(wal.fsyncs)
            yield CounterMetricFamily("contactgraph_wal_fsyncs", "Write-ahead log fsyncs (group commits).",
                                      value=fsyncs)
            yield CounterMetricFamily("contactgraph_wal_appends", "Records appended to the write-ahead log.",
                                      value=int(getattr(wal, "appends", 0)))
            # The WAL keeps a running count and sum, not each fsync: a
            # summary without quantiles (mean latency = rate(sum) / rate(count)).
            yield SummaryMetricFamily("contactgraph_wal_fsync_seconds",
                                      "Write-ahead log fsync latency (group commits), seconds.",
                                      count_value=fsyncs, sum_value=float(getattr(wal, "fsync_seconds", 0.0)))


class MetricsEndpoint:
    """The HTTP server that exposes a registry (``/metrics``)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port = int(self._httpd.server_address[1])
        self.host = host

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
