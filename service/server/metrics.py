"""Prometheus metrics, served over HTTP on their own port.

Each server has its own registry (tests run several servers in one
process). Per-call series are updated by the interceptor; the state of the
data (snapshot, graph size, write-ahead log) is read at scrape time by a
collector, so a snapshot swap shows up without anyone telling the metrics.

Series (all prefixed ``contactgraph_``):
- ``rpc_duration_seconds{method,code}``: histogram of server-side latency,
  rejections included;
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
- ``snapshot_info{snapshot_id}``, ``snapshot_age_seconds``,
  ``snapshot_last_event_age_seconds``;
- ``graph_users``, ``graph_edges{kind}``, ``graph_overlay_edges``;
- ``wal_events_since_snapshot`` (what a restart would replay, i.e. how far
  the snapshot lags the log), ``wal_fsyncs_total``, ``graph_watermark``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Latency buckets in seconds: sub-millisecond resolution where the targets
# are (checks < 2 ms, suggestions < 10 ms), coarse above.
BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
           2.5, 5.0)


class ServerMetrics:
    """The per-call series of one server and the registry they live in."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.duration = Histogram("contactgraph_rpc_duration_seconds", "Server-side RPC latency by method and code.",
                                  ["method", "code"], buckets=BUCKETS, registry=r)
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
        self._children: dict[tuple[str, str], Any] = {}
        self._counters: dict[str, Any] = {}
        self._lock = threading.Lock()

    def observe(self, method: str, code: str, seconds: float) -> None:
        key = (method, code)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, self.duration.labels(method, code))
        child.observe(seconds)

    def observe_counts(self, counts: Mapping[str, int]) -> None:
        """The pipeline's per-stage counts: ``source.<name>``,
        ``filter.<reason>`` and ``ranked``."""
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
                else:
                    continue
                self._counters[key] = child
            child.inc(n)


class StateCollector(Collector):
    """Reads the served state at scrape time. ``state`` returns the current
    ServingState (it changes on a snapshot swap); ``lanes`` returns
    {lane: (in flight, capacity)}."""

    def __init__(self, state: Callable[[], Any], lanes: Callable[[], Mapping[str, tuple[int, int]]],
                 wal: Callable[[], Any] | None = None, clock: Callable[[], float] = time.time) -> None:
        self._state = state
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
        created = float(manifest.get("created_time", now))
        yield GaugeMetricFamily("contactgraph_snapshot_age_seconds", "Seconds since the served snapshot was built.",
                                value=max(now - created, 0.0))
        last_event = float(manifest.get("last_event_time", created))
        yield GaugeMetricFamily("contactgraph_snapshot_last_event_age_seconds",
                                "Seconds since the newest event folded into the served snapshot.",
                                value=max(now - last_event, 0.0))
        store = state.store
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
        wal = self._wal() if self._wal is not None else None
        if wal is not None and hasattr(wal, "fsyncs"):
            yield CounterMetricFamily("contactgraph_wal_fsyncs", "Write-ahead log fsyncs (group commits).",
                                      value=int(wal.fsyncs))


class MetricsEndpoint:
    """The HTTP server that exposes a registry (``/metrics``)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port = int(self._httpd.server_address[1])
        self.host = host

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
