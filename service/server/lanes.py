"""Lanes: how the server bounds the work it accepts.

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

``ServingInterceptor`` (``service.server.interceptors``) reads each call's
verdict from ``admission`` and answers the refusals.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from service.server.config import ServerConfig


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
admission = threading.local()


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
    admission.verdict = (verdict, item.queued)
    try:
        result = item.fn(*item.args, **item.kwargs)
    except BaseException as err:
        item.future.set_exception(err)
    else:
        item.future.set_result(result)
    finally:
        admission.verdict = None


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
        # Not ``_threads``: that is the parent's (a set), used by its shutdown.
        self._lane_threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        item = _Item(futures.Future(), fn, args, kwargs, time.monotonic())
        with self._cond:
            if self._closed:
                raise RuntimeError(f"lane {self.lane.name} is shut down")
            admitted = self.lane.try_admit()
            if admitted:
                self._queue.append(item)
                if len(self._lane_threads) < self.lane.config.workers and self._running + len(self._queue) > \
                        len(self._lane_threads):
                    self._start_thread()
                self._cond.notify()
        if not admitted:
            self._refusals.submit(_run, item, Lane.FULL)
        return item.future

    def _start_thread(self) -> None:
        t = threading.Thread(target=self._work, name=f"rpc-{self.lane.name}-{len(self._lane_threads)}", daemon=True)
        self._lane_threads.append(t)
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
            for t in self._lane_threads:
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
