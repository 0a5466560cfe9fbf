"""The server's one interceptor: who may call (mutual TLS), overload and
deadlines, the request id, metrics, and INTERNAL for anything unexpected.

Overload. Every unary method belongs to a *lane* (``service.server.lanes``
says which, and how a lane admits, queues and refuses calls); the
interceptor reads the lane's verdict for the call and answers a refusal
with RESOURCE_EXHAUSTED (and RetryInfo) or DEADLINE_EXCEEDED.

Requests whose bytes do not decode are refused as INVALID_ARGUMENT
(``service.server.decoding``).

Deadlines. A call whose deadline has passed by the time a worker picks it
up is not run. While it runs, ``request_scope.checkpoint`` (called by the
pipeline between stages) stops it once the deadline passes or the client
cancels: DEADLINE_EXCEEDED (or CANCELLED), and the work is abandoned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from service.durability.stream_log import AppliedSequence
from service.server.consistency import await_watermark
from service.server.decoding import decoded_each, refuse_undecodable, tolerant
from service.server.lanes import Lane, admission, lane_of
from service.server.metrics import ServerMetrics
from service.server.request_scope import Abandoned, RequestScope, open_scope
from service.server.status import abort
from service.server.tls import Authorizer, peer_identities

log = logging.getLogger(__name__)

# The shortest RetryInfo delay an overload answer asks for.
MIN_RETRY_DELAY_S = 0.1

REQUEST_ID_KEY = "x-request-id"
_MAX_REQUEST_ID = 64
_WARN_EVERY_S = 10.0


@dataclass(frozen=True)
class _Method:
    full: str  # "/contactgraph.v1.SuggestionService/SuggestContacts"
    label: str  # "SuggestionService/SuggestContacts"
    lane: Lane | None
    roles: frozenset[str]


def _label(method: str) -> str:
    service, _, name = method.lstrip("/").partition("/")
    return f"{service.rsplit('.', 1)[-1]}/{name}"


def _request_id(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata():
        if key == REQUEST_ID_KEY:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            return "".join(c for c in text[:_MAX_REQUEST_ID] if c.isprintable()) or None
    return None


class ServingInterceptor(grpc.ServerInterceptor):
    """See the module docstring. ``authorizer`` is None without mutual
    TLS; ``lanes`` maps lane names to their admission; ``applied`` is the
    replica's applied stream sequence when the log is a stream (then calls
    carrying ``x-min-watermark`` wait for it: ``service.server.consistency``)."""

    def __init__(self, metrics: ServerMetrics, lanes: Mapping[str, Lane],
                 authorizer: Authorizer | None = None, applied: AppliedSequence | None = None) -> None:
        self._metrics = metrics
        self._applied = applied
        self._lanes = dict(lanes)
        self._authorizer = authorizer
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._lock = threading.Lock()
        self._shed_since_warn: dict[tuple[str, str], int] = {}
        self._last_warn = 0.0

    @property
    def authorizer(self) -> Authorizer | None:
        return self._authorizer

    def lanes(self) -> dict[str, tuple[int, int]]:
        """{lane: (in flight, capacity)} for the metrics."""
        return {name: (lane.in_flight, lane.config.capacity) for name, lane in self._lanes.items()}

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        method = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(details)
        if handler is None:
            return None
        wrapped = self._wrap(method, handler)
        with self._lock:
            self._wrapped.setdefault(method, wrapped)
        return wrapped

    # -- wrapping ------------------------------------------------------
    def _wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        lane_name = lane_of(method)
        info = _Method(method, _label(method), self._lanes.get(lane_name) if lane_name else None,
                       self._authorizer.roles_for(method) if self._authorizer else frozenset())
        deserializer = tolerant(handler.request_deserializer)
        if handler.unary_unary is not None and not handler.request_streaming and not handler.response_streaming:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(info, handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer)
        return self._guard_streaming(info, handler, deserializer)

    def _guard_streaming(self, info: _Method, handler: grpc.RpcMethodHandler[Any, Any],
                         deserializer: Callable[[bytes], Any] | None) -> grpc.RpcMethodHandler[Any, Any]:
        """Streaming methods (health's Watch, reflection): the permission
        check, and INVALID_ARGUMENT for a request that does not decode."""
        check = self._authorizer is not None and not Authorizer.is_open(info.full)

        def guard(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def guarded(request: Any, context: grpc.ServicerContext) -> Any:
                if check:
                    self._authorize(info, context)
                if handler.request_streaming:
                    request = decoded_each(info.label, request, context)
                else:
                    refuse_undecodable(info.label, request, context)
                return behavior(request, context)
            return guarded

        kind = ("stream_stream" if handler.request_streaming and handler.response_streaming else
                "stream_unary" if handler.request_streaming else "unary_stream")
        factory = getattr(grpc, f"{kind}_rpc_method_handler")
        guarded: grpc.RpcMethodHandler[Any, Any] = factory(
            guard(getattr(handler, kind)), request_deserializer=deserializer,
            response_serializer=handler.response_serializer)
        return guarded

    def _authorize(self, info: _Method, context: grpc.ServicerContext) -> None:
        assert self._authorizer is not None
        identities = peer_identities(context)
        if not self._authorizer.allowed(info.full, identities, info.roles):
            self._shed(info, "permission")
            log.warning("permission denied", extra={"fields": {
                "method": info.label, "identities": identities, "peer": context.peer()}})
            abort(context, grpc.StatusCode.PERMISSION_DENIED,
                  f"client {', '.join(identities) or '(no identity)'} may not call {info.label}",
                  "PERMISSION_DENIED", method=info.label)

    def _unary(self, info: _Method, behavior: Callable[[Any, grpc.ServicerContext], Any]
               ) -> Callable[[Any, grpc.ServicerContext], Any]:
        metrics = self._metrics
        lane = info.lane
        authorize = self._authorizer is not None and not Authorizer.is_open(info.full)
        applied = self._applied

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            verdict = getattr(admission, "verdict", None) if lane is not None else None
            # Latency counts the time queued in the lane too.
            started = verdict[1] if verdict is not None else time.monotonic()
            scope = RequestScope(_request_id(context), context.time_remaining, context.is_active)
            entered = False
            try:
                with open_scope(scope):
                    if lane is not None:
                        if verdict is None:  # not run by the lane's pool: admit here
                            admitted = lane.enter(context.time_remaining())
                            if admitted is not Lane.OK:
                                self._refuse(info, admitted, context)
                            entered = True
                        elif verdict[0] is not Lane.OK:
                            self._refuse(info, verdict[0], context)
                    if authorize:
                        self._authorize(info, context)
                    refuse_undecodable(info.label, request, context)
                    scope.check("queued")
                    if applied is not None:
                        await_watermark(applied, context)
                    response = behavior(request, context)
                    if scope.counts:
                        metrics.observe_counts(scope.counts)
                    return response
            except Abandoned as err:
                self._abandoned(info, err, context)
            except Exception:
                if context.code() is None:  # type: ignore[attr-defined]  # not an abort: a bug (the stubs lack code())
                    log.exception("unexpected error in %s", info.label,
                                  extra={"fields": {"method": info.label, "request_id": scope.request_id}})
                    abort(context, grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")
                raise
            finally:
                if entered:
                    assert lane is not None
                    lane.leave()
                code = context.code()  # type: ignore[attr-defined]  # grpc has it; the stubs do not
                name = code.name if code is not None else "OK"
                elapsed = time.monotonic() - started
                metrics.observe(info.label, name, elapsed)
                if log.isEnabledFor(logging.DEBUG):
                    with open_scope(scope):
                        log.debug("rpc", extra={"fields": {"method": info.label, "code": name,
                                                           "ms": round(elapsed * 1000, 3)}})

        if lane is not None and lane.pool is not None:
            handle.experimental_thread_pool = lane.pool  # type: ignore[attr-defined]  # gRPC runs the call there
        return handle

    def _refuse(self, info: _Method, why: str, context: grpc.ServicerContext) -> None:
        assert info.lane is not None
        self._shed(info, why)
        lane = info.lane
        if why == Lane.DEADLINE:
            abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded while queued", "DEADLINE_EXCEEDED",
                  lane=lane.name)
        # RetryInfo (AIP-193): a full lane drains in about one queue
        # timeout, so that is the least wait worth asking for; clients add
        # jitter and back off further on repeated refusals.
        retry_after_s = max(lane.config.queue_timeout_s, MIN_RETRY_DELAY_S)
        if why == Lane.QUEUE_TIMEOUT:
            abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                  f"server overloaded: waited over {lane.config.queue_timeout_s:g}s for a {lane.name} worker; "
                  "retry with backoff", "SERVER_OVERLOADED", retry_after_s=retry_after_s, lane=lane.name)
        abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"server overloaded: {lane.config.capacity} {lane.name} calls in flight; retry with backoff",
              "SERVER_OVERLOADED", retry_after_s=retry_after_s, lane=lane.name)

    def _abandoned(self, info: _Method, err: Abandoned, context: grpc.ServicerContext) -> None:
        self._metrics.abandoned.labels(err.stage).inc()
        self._shed(info, "deadline" if err.expired else "cancelled")
        log.debug("abandoned %s at %s", info.label, err.stage)
        if err.expired:
            abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline exceeded (stopped at {err.stage})",
                  "DEADLINE_EXCEEDED", stage=err.stage)
        abort(context, grpc.StatusCode.CANCELLED, f"cancelled by the client (stopped at {err.stage})", "CANCELLED",
              stage=err.stage)

    def _shed(self, info: _Method, reason: str) -> None:
        lane = info.lane.name if info.lane is not None else "none"
        self._metrics.shed.labels(lane, reason).inc()
        now = time.monotonic()
        with self._lock:
            key = (lane, reason)
            self._shed_since_warn[key] = self._shed_since_warn.get(key, 0) + 1
            if now - self._last_warn < _WARN_EVERY_S:
                return
            counts, self._shed_since_warn, self._last_warn = self._shed_since_warn, {}, now
        # At most one line per interval, however hard the flood.
        log.warning("shedding load", extra={"fields": {
            "shed": {f"{lane}.{reason}": n for (lane, reason), n in counts.items()}}})


