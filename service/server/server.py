"""The gRPC server: servicers, health, reflection, graceful shutdown."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from contactgraph.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    graph_service_pb2,
    graph_service_pb2_grpc,
    guardian_service_pb2,
    guardian_service_pb2_grpc,
    safety_service_pb2,
    safety_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)
from graph.clock import Clock
from graph.model import Event
from service.durability.hot_swap import SnapshotSwapper
from service.durability.journal import Journal
from service.durability.stream_log import StreamJournal, StreamLog
from service.safety.engine import SafetyEngine
from service.safety.exposure import ImpressionLedger
from service.safety.guardian import GuardianRegistry
from service.safety.policy import PolicyError, PolicyHolder, load_policy
from service.server.config import ServerConfig, policy_root, snapshot_roots
from service.server.interceptors import ServingInterceptor
from service.server.lanes import Lanes
from service.server.metrics import MetricsEndpoint, ServerMetrics, StateCollector
from service.server.state import ServingState
from service.server.tls import Authorizer, add_port
from service.servicers import GraphServicer, SuggestionServicer
from service.servicers.admin import AdminServicer
from service.servicers.guardian import GuardianServicer
from service.servicers.safety import SafetyServicer

log = logging.getLogger(__name__)

GRAPH_SERVICE = graph_service_pb2.DESCRIPTOR.services_by_name["GraphService"].full_name
SERVICE_NAMES = (
    suggestion_service_pb2.DESCRIPTOR.services_by_name["SuggestionService"].full_name,
    GRAPH_SERVICE,
    safety_service_pb2.DESCRIPTOR.services_by_name["SafetyService"].full_name,
    guardian_service_pb2.DESCRIPTOR.services_by_name["GuardianService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


def build_safety(config: ServerConfig, clock: Clock) -> SafetyEngine:
    """The safety engine outlives snapshots: policy, guardians (durable in
    the data directory) and what was shown."""
    policy = PolicyHolder(load_policy(config.policy_path), config.policy_path) if config.policy_path else PolicyHolder()
    journal = config.data_dir / "guardian" / "journal.jsonl" if config.data_dir is not None else None
    guardians = GuardianRegistry(config.guardian_key, clock, journal, config.audit_retention_s)
    return SafetyEngine(policy, guardians, ImpressionLedger())


class PortInUse(RuntimeError):
    """The port is taken: we never share it silently (no SO_REUSEPORT)."""


class Server:
    """A running server: the grpc server, its port and its health."""

    # grpc turns SO_REUSEPORT on by default, letting a second server
    # silently share the port; a busy port must fail. (The serving bench
    # measures read-only replicas that share one on purpose.)
    SHARES_PORT = False

    def __init__(self, config: ServerConfig, state: ServingState, journal: Journal | None = None) -> None:
        self.config = config
        self.state = state
        # Every write goes through the journal (and its write-ahead log, or
        # the JetStream stream with config.stream).
        if config.stream is not None and not isinstance(journal, StreamJournal):
            if journal is not None and journal.wal is not None:
                raise ValueError("a server logs to the stream or to a write-ahead log, not both")
            journal = open_stream_journal(config, state)
        self.journal = journal if journal is not None else Journal(state.store)
        self.swapper = SnapshotSwapper(config, self.journal, lambda: self.state, self._publish)
        self._compacting = False
        # Overload, deadlines, mTLS permissions, request ids and metrics:
        # service/server/interceptors.py and lanes.py. The pool holds every call the lanes admit.
        self.metrics = ServerMetrics(services=(*SERVICE_NAMES, health.SERVICE_NAME))
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.lanes = Lanes(config)
        self.interceptor = ServingInterceptor(
            self.metrics, self.lanes.by_name,
            Authorizer(config.tls) if config.tls is not None and config.tls.mutual else None,
            self.journal.applied if isinstance(self.journal, StreamJournal) else None)
        self.metrics.registry.register(StateCollector(
            lambda: self.state, self.interceptor.lanes, lambda: self.journal.wal,
            stream_applied=self._stream_applied))
        self.grpc_server = grpc.server(
            # Health, reflection (each lane has its own pool); as big as the
            # cap so that nothing can queue here without bound.
            futures.ThreadPoolExecutor(max_workers=self.lanes.max_concurrent_rpcs(), thread_name_prefix="rpc"),
            interceptors=[self.interceptor],
            maximum_concurrent_rpcs=self.lanes.max_concurrent_rpcs(),
            options=[
                ("grpc.so_reuseport", int(self.SHARES_PORT)),
                ("grpc.max_receive_message_length", config.max_request_bytes),
            ],
        )
        # The generated *_pb2_grpc modules carry no types (protoc writes no
        # stubs for services), hence the ignores on the calls into them.
        suggestion_service_pb2_grpc.add_SuggestionServiceServicer_to_server(  # type: ignore[no-untyped-call]
            SuggestionServicer(lambda: self.state, config), self.grpc_server)
        graph_service_pb2_grpc.add_GraphServiceServicer_to_server(  # type: ignore[no-untyped-call]
            GraphServicer(lambda: self.state, config, self.journal), self.grpc_server)
        safety_service_pb2_grpc.add_SafetyServiceServicer_to_server(  # type: ignore[no-untyped-call]
            SafetyServicer(lambda: self.state), self.grpc_server)
        guardian_service_pb2_grpc.add_GuardianServiceServicer_to_server(  # type: ignore[no-untyped-call]
            GuardianServicer(lambda: self.state, self.interceptor.authorizer), self.grpc_server)
        admin_service_pb2_grpc.add_AdminServiceServicer_to_server(  # type: ignore[no-untyped-call]
            AdminServicer(self.swapper.load, lambda: self.state.safety.policy,
                          snapshot_roots=snapshot_roots(config), policy_root=policy_root(config)),
            self.grpc_server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc_server)
        address = f"{config.host}:{config.port}"
        try:
            port = add_port(self.grpc_server, address, config.tls)
        except RuntimeError as err:
            raise PortInUse(f"cannot listen on {address}: {err} (is another server running?)") from None
        if port == 0:
            raise PortInUse(f"cannot listen on {address}: the port is in use (is another server running?)")
        self.port = port

    def start(self) -> None:
        if isinstance(self.journal, StreamJournal):
            # Before serving, so that every call sees the stream applied as
            # far as the consumer got (an x-min-watermark read waits for more).
            self.journal.start(self._applied_from_stream)
        if self.config.metrics_port is not None:
            self.metrics_endpoint = MetricsEndpoint(self.metrics.registry, self.config.metrics_host or self.config.host,
                                                    self.config.metrics_port)
        self.grpc_server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.journal.on_failure(self._writes_failed)

    def _stream_applied(self) -> int | None:
        return self.journal.applied.value if isinstance(self.journal, StreamJournal) else None

    def _applied_from_stream(self, events: list[Event]) -> None:
        """After the consumer applied a stream record: what ApplyEvents
        does after a local commit (impressions, search)."""
        state = self.state
        state.safety.observe(self.journal.store, events)
        state.update_search(events)

    def _writes_failed(self, err: BaseException) -> None:
        """The WAL (or the journal) failed: no write can be made durable
        until a restart. GraphService says NOT_SERVING, and so does the
        whole server (""): a load balancer or Kubernetes probe checks "",
        and a replica that refuses every write must leave the pool and be
        restarted (a restart reopens the log and replays it), even though
        it could still answer reads. The other services stay SERVING for
        callers who check them by name."""
        log.critical("writes can no longer be made durable; health NOT_SERVING for %s and the server "
                     "until a restart: %s", GRAPH_SERVICE, err)
        for name in ("", GRAPH_SERVICE):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    def stop(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, then let in-flight calls finish."""
        self.health.enter_graceful_shutdown()
        self.grpc_server.stop(self.config.grace_s if grace_s is None else grace_s).wait()
        self.lanes.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        self.swapper.stop()
        self.state.store.stop_compactor()
        if self.journal.wal is not None:
            self.journal.wal.close()
        if isinstance(self.journal, StreamJournal):
            self.journal.stop()

    def start_compactor(self) -> None:
        """Compact the served store in the background, and every store
        swapped in later."""
        self._compacting = True
        self.state.store.start_compactor()

    def _publish(self, state: ServingState) -> None:
        """Install a new state (the swapper calls this with commits held).
        Calls in flight keep the old one until they finish."""
        old, self.state = self.state, state
        if self._compacting:
            state.store.start_compactor()
            threading.Thread(target=old.store.stop_compactor, name="old-compactor-stop", daemon=True).start()

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def open_stream_journal(config: ServerConfig, state: ServingState) -> StreamJournal:
    """Connect to the stream (creating it if missing). It is consumed from
    sequence 1: the snapshot records no stream sequence yet, and events it
    already holds are duplicates the store drops. Raises StreamUnavailable."""
    assert config.stream is not None
    stream = StreamLog(config.stream)
    try:
        stream.connect()
    except BaseException:
        stream.close()
        raise
    return StreamJournal(state.store, stream, start_sequence=1)


def create_server(config: ServerConfig, state: ServingState,
                  journal: Journal | None = None) -> tuple[Server, int]:
    """A started server and the port it listens on (config.port 0 picks a
    free one). Without a journal, writes are not logged."""
    server = Server(config, state, journal)
    server.start()
    return server, server.port


def serve(config: ServerConfig, state: ServingState, journal: Journal | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    server, port = create_server(config, state, journal)
    # What start-up allocated lives as long as the process: keep the
    # garbage collector's full passes from rescanning it.
    gc.freeze()
    server.start_compactor()
    if config.watch_interval_s > 0:
        server.swapper.watch(config.snapshot, config.watch_interval_s)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: draining in-flight calls for up to %.0fs", signal.Signals(signum).name, config.grace_s)
        stopping.set()

    def on_hangup(_signum: int, _frame: object) -> None:
        # Reload off the signal handler's frame; a bad file keeps the old policy.
        threading.Thread(target=reload_policy, args=(state.safety,), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    log.info("serving snapshot %s on %s:%d", state.snapshot_id, config.host, port)
    print(f"contactgraph serving snapshot {state.snapshot_id} on {config.host}:{port}", flush=True)
    stopping.wait()
    server.stop()
    log.info("stopped")


def reload_policy(safety: SafetyEngine) -> str:
    """Reload the policy file; log and keep the running policy if it is bad.
    Returns the version in force afterwards."""
    try:
        policy = safety.policy.reload()
        log.info("policy reloaded", extra={"fields": {"policy_version": policy.version}})
    except PolicyError as err:
        log.error("policy reload refused, keeping %s: %s", safety.policy.current.version, err)
    return safety.policy.current.version
