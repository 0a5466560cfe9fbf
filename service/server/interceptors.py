"""The server's one interceptor: who may call (mutual TLS), overload and
deadlines, the request id, metrics, and INTERNAL for anything unexpected.

Overload. Every unary method belongs to a *lane*: a fixed number of threads
of its own (``workers``) and a bounded FIFO queue in front of them:

- ``send``: SafetyService (CheckMessaging, BatchCheckMessaging). Its
  threads are reserved: no other call can take them, so a flood of
  suggestion calls cannot starve the send path of workers.
- ``events``: GraphService.ApplyEvents. Its calls mostly wait for the
  write-ahead log's fsync (without the GIL), and group commit needs many
  of them at once, so it has more workers than the CPU-bound lanes.
- ``admin``: AdminService (snapshot loads, seconds each): one at a time.
- ``default``: everything else of ours.
- health and reflection are not limited by a lane (load balancers must
  always get an answer), only by the server-wide cap below.

gRPC hands each call to its lane's pool (``LanePool``, via the handler's
``experimental_thread_pool``) as it arrives. A call that finds the lane's
workers and queue full gets RESOURCE_EXHAUSTED at once (answered on a
small shared pool, never queued behind the lane's work); a call that waits
in the queue longer than ``queue_timeout_s`` is taken out by a watchdog and
gets RESOURCE_EXHAUSTED without running. A call whose deadline passed while
it waited is not run (DEADLINE_EXCEEDED). Above the lanes, gRPC's own
``maximum_concurrent_rpcs`` caps every call in the server and is enforced
by gRPC itself before any Python runs, so nothing waits in an unbounded
queue anywhere.

Deadlines. A call whose deadline has passed by the time a worker picks it
up is not run. While it runs, ``request_scope.checkpoint`` (called by the
pipeline between stages) stops it once the deadline passes or the client
cancels: DEADLINE_EXCEEDED (or CANCELLED), and the work is abandoned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service.server.config import ServerConfig
from service.server.metrics import ServerMetrics
from service.server.request_scope import Abandoned, RequestScope, open_scope
from service.server.status import abort, invalid_argument
from service.server.tls import Authorizer, peer_identities

log = logging.getLogger(__name__)

# The shortest RetryInfo delay an overload answer asks for.
MIN_RETRY_DELAY_S = 0.1

REQUEST_ID_KEY = "x-request-id"
_MAX_REQUEST_ID = 64
_WARN_EVERY_S = 10.0


@dataclass(frozen=True)
class LaneConfig:
    """``workers`` calls run at once; ``queue`` more may wait, each for at
    most ``queue_timeout_s`` (and never past its deadline)."""

    workers: int
    queue: int
    queue_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"a lane needs at least one worker, got {self.workers}")
        if self.queue < 0:
            raise ValueError(f"a lane's queue cannot be negative, got {self.queue}")
        if not self.queue_timeout_s > 0:
            raise ValueError(f"queue timeout must be positive, got {self.queue_timeout_s}")

    @property
    def capacity(self) -> int:
        return self.workers + self.queue


def lane_of(method: str) -> str | None:
    """The lane of a full method name ("/pkg.Service/Method"); None for
    health and reflection."""
    if method.startswith("/contactgraph.v1.SafetyService/"):
        return "send"
    if method == "/contactgraph.v1.GraphService/ApplyEvents":
        return "events"
    if method.startswith("/contactgraph.v1.AdminService/"):
        return "admin"
    if method.startswith("/grpc."):
        return None
    return "default"


class _FifoSlots:
    """A counting semaphore that hands a freed slot to the longest waiter
    (threading.Semaphore lets newcomers barge past waiters)."""

    def __init__(self, n: int) -> None:
        self._free = n
        self._waiters: deque[threading.Lock] = deque()
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            return False

    def acquire(self, timeout: float) -> bool:
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if timeout > 0 and waiter.acquire(timeout=timeout):
            return True
        with self._lock:
            try:
                self._waiters.remove(waiter)
                return False
            except ValueError:
                pass  # a release handed us the slot as we gave up: take it
        waiter.acquire()
        return True

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1


class Lane:
    """One lane's accounting: ``in_flight`` calls (running or queued) out
    of ``config.capacity``. Calls normally come through the lane's
    ``LanePool``; ``enter``/``leave`` admit a call that did not (a blocking
    FIFO wait on the caller's thread), so admission never depends on how
    gRPC schedules handlers."""

    OK, FULL, QUEUE_TIMEOUT, DEADLINE = "ok", "overloaded", "queue_timeout", "deadline"

    def __init__(self, name: str, config: LaneConfig) -> None:
        self.name = name
        self.config = config
        self._slots = _FifoSlots(config.workers)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.pool: LanePool | None = None

    def try_admit(self) -> bool:
        with self._lock:
            if self.in_flight >= self.config.capacity:
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def enter(self, remaining: float | None) -> str:
        """Take a worker slot, waiting in the queue if there is room.
        Returns OK (then call ``leave``), FULL, QUEUE_TIMEOUT or DEADLINE."""
        if not self.try_admit():
            return Lane.FULL
        if self._slots.try_acquire():
            return Lane.OK
        wait = self.config.queue_timeout_s if remaining is None else min(self.config.queue_timeout_s, remaining)
        if self._slots.acquire(wait):
            return Lane.OK
        self.release()
        return Lane.DEADLINE if remaining is not None and remaining <= self.config.queue_timeout_s else \
            Lane.QUEUE_TIMEOUT

    def leave(self) -> None:
        self._slots.release()
        self.release()


# What the pool decided about the call running on this thread: (verdict,
# monotonic time it was queued). Unset: the call did not come through a
# LanePool.
_admission = threading.local()


@dataclass
class _Item:
    future: futures.Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queued: float


def _run(item: _Item, verdict: str) -> None:
    """Run gRPC's work item with the lane's verdict visible to the handler."""
    if not item.future.set_running_or_notify_cancel():
        return
    _admission.verdict = (verdict, item.queued)
    try:
        result = item.fn(*item.args, **item.kwargs)
    except BaseException as err:  # noqa: BLE001 - handed to the future, as ThreadPoolExecutor does
        item.future.set_exception(err)
    else:
        item.future.set_result(result)
    finally:
        _admission.verdict = None


class LanePool(futures.ThreadPoolExecutor):
    """A lane's threads and its bounded FIFO queue, with admission at
    ``submit`` (gRPC calls it on its polling thread as each call arrives).

    A ThreadPoolExecutor only so that gRPC accepts it as a handler's
    ``experimental_thread_pool``; none of the parent's machinery is used.
    Refusals run on ``refusals`` (a small pool shared by the lanes): the
    handler sees the verdict and answers RESOURCE_EXHAUSTED at once."""

    def __init__(self, lane: Lane, refusals: futures.ThreadPoolExecutor) -> None:
        super().__init__(max_workers=1)
        self.lane = lane
        self._refusals = refusals
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._running = 0
        self._closed = False
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        item = _Item(futures.Future(), fn, args, kwargs, time.monotonic())
        with self._cond:
            if self._closed:
                raise RuntimeError(f"lane {self.lane.name} is shut down")
            admitted = self.lane.try_admit()
            if admitted:
                self._queue.append(item)
                if len(self._threads) < self.lane.config.workers and self._running + len(self._queue) > \
                        len(self._threads):
                    self._start_thread()
                self._cond.notify()
        if not admitted:
            self._refusals.submit(_run, item, Lane.FULL)
        return item.future

    def _start_thread(self) -> None:
        t = threading.Thread(target=self._work, name=f"rpc-{self.lane.name}-{len(self._threads)}", daemon=True)
        self._threads.append(t)
        t.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
                self._running += 1
            try:
                _run(item, Lane.OK)
            finally:
                with self._cond:
                    self._running -= 1
                self.lane.release()

    def expire(self, now: float) -> int:
        """Refuse queued calls older than the queue timeout (the watchdog
        calls this). Returns how many."""
        expired: list[_Item] = []
        limit = self.lane.config.queue_timeout_s
        with self._cond:
            while self._queue and now - self._queue[0].queued > limit:
                expired.append(self._queue.popleft())
        for item in expired:
            self.lane.release()
            self._refusals.submit(_run, item, Lane.QUEUE_TIMEOUT)
        return len(expired)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._closed = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft().future.cancel()
                    self.lane.release()
            self._cond.notify_all()
        if wait:
            for t in self._threads:
                t.join()
        super().shutdown(wait=wait)


class _Watchdog:
    """Takes calls out of lane queues once they have waited too long."""

    def __init__(self, pools: list[LanePool], interval_s: float) -> None:
        self._pools = pools
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lane-watchdog", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            for pool in self._pools:
                pool.expire(now)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


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


class _Undecodable:
    """What a request's bytes decode to when they are not a valid message:
    gRPC answers a deserializer that raises with INTERNAL ("Exception
    deserializing request!") before any of our code runs, so the
    deserializer returns this instead and the call is refused as the
    client's error (INVALID_ARGUMENT)."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer``, answering ``_UNDECODABLE`` for bytes it refuses."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _UNDECODABLE
    return deserialize


def _refuse_undecodable(info: _Method, request: Any, context: grpc.ServicerContext) -> None:
    if request is _UNDECODABLE:
        log.info("undecodable request", extra={"fields": {"method": info.label, "peer": context.peer()}})
        invalid_argument(context, "request", f"the request bytes are not a valid {info.label} request message "
                                             "(protobuf decoding failed)", reason="UNDECODABLE_REQUEST")


def _decoded_each(info: _Method, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    """A request stream that stops the call with INVALID_ARGUMENT at the
    first message that does not decode."""
    for request in requests:
        _refuse_undecodable(info, request, context)
        yield request


class ServingInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc's classes are untyped
    """See the module docstring. ``authorizer`` is None without mutual
    TLS; ``lanes`` maps lane names to their admission."""

    def __init__(self, metrics: ServerMetrics, lanes: Mapping[str, Lane],
                 authorizer: Authorizer | None = None) -> None:
        self._metrics = metrics
        self._lanes = dict(lanes)
        self._authorizer = authorizer
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
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
    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        lane_name = lane_of(method)
        info = _Method(method, _label(method), self._lanes.get(lane_name) if lane_name else None,
                       self._authorizer.roles_for(method) if self._authorizer else frozenset())
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None and not handler.request_streaming and not handler.response_streaming:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(info, handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer)
        return self._guard_streaming(info, handler, deserializer)

    def _guard_streaming(self, info: _Method, handler: grpc.RpcMethodHandler,
                         deserializer: Callable[[bytes], Any] | None) -> grpc.RpcMethodHandler:
        """Streaming methods (health's Watch, reflection): the permission
        check, and INVALID_ARGUMENT for a request that does not decode."""
        check = self._authorizer is not None and not Authorizer.is_open(info.full)

        def guard(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def guarded(request: Any, context: grpc.ServicerContext) -> Any:
                if check:
                    self._authorize(info, context)
                if handler.request_streaming:
                    request = _decoded_each(info, request, context)
                else:
                    _refuse_undecodable(info, request, context)
                return behavior(request, context)
            return guarded

        kind = ("stream_stream" if handler.request_streaming and handler.response_streaming else
                "stream_unary" if handler.request_streaming else "unary_stream")
        factory = getattr(grpc, f"{kind}_rpc_method_handler")
        return factory(guard(getattr(handler, kind)), request_deserializer=deserializer,
                       response_serializer=handler.response_serializer)

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

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            verdict = getattr(_admission, "verdict", None) if lane is not None else None
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
                    _refuse_undecodable(info, request, context)
                    scope.check("queued")
                    response = behavior(request, context)
                    if scope.counts:
                        metrics.observe_counts(scope.counts)
                    return response
            except Abandoned as err:
                self._abandoned(info, err, context)
            except Exception:
                if context.code() is None:  # not an abort: a bug
                    log.exception("unexpected error in %s", info.label,
                                  extra={"fields": {"method": info.label, "request_id": scope.request_id}})
                    abort(context, grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")
                raise
            finally:
                if entered:
                    assert lane is not None
                    lane.leave()
                code = context.code()
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


# Calls outside the lanes (health, reflection) and refusals in flight,
# on top of every lane's workers + queue, before gRPC itself says no.
_HEADROOM = 64
_REFUSAL_THREADS = 2


class Lanes:
    """A server's lanes (default, send, events, admin), their pools, the
    shared refusal pool and the queue watchdog. ``close`` after the gRPC
    server has stopped."""

    def __init__(self, config: ServerConfig) -> None:
        timeout = config.queue_timeout_s
        self.by_name = {
            "default": Lane("default", LaneConfig(config.workers, config.queue, timeout)),
            "send": Lane("send", LaneConfig(config.send_workers, config.send_queue, timeout)),
            "events": Lane("events", LaneConfig(config.event_workers, config.event_queue, timeout)),
            "admin": Lane("admin", LaneConfig(1, 0, timeout)),
        }
        self._refusals = futures.ThreadPoolExecutor(_REFUSAL_THREADS, thread_name_prefix="rpc-refuse")
        for lane in self.by_name.values():
            lane.pool = LanePool(lane, self._refusals)
        self._watchdog = _Watchdog([lane.pool for lane in self.by_name.values() if lane.pool is not None],
                                   min(timeout / 4, 0.05))

    def max_concurrent_rpcs(self) -> int:
        """gRPC's own cap on calls in the server: every lane full, plus
        headroom for health checks and refusals."""
        return sum(lane.config.capacity for lane in self.by_name.values()) + _HEADROOM

    def close(self) -> None:
        self._watchdog.stop()
        for lane in self.by_name.values():
            if lane.pool is not None:
                lane.pool.shutdown(wait=False, cancel_futures=True)
        self._refusals.shutdown(wait=False)
