"""The graph-event log as a NATS JetStream stream (``serve --log nats://...``).

Write path (any replica): ApplyEvents validates as today, then publishes the
batch as one ``contactgraph.v1.WalRecord`` (the bytes the local journal
writes) to ``contactgraph.events`` with a ``Nats-Msg-Id`` header, a digest of
the batch's event ids; JetStream's ack is the commit point and its stream
sequence is the batch's ``watermark``. A retry of the same batch inside the
duplicate window is dropped by JetStream (the ack says duplicate); after it,
every replica's own event-id memory drops the events instead.

Apply path (every replica, the writer's included: one path): an ordered
consumer reads the stream in order from a start sequence and commits each
record through the local ``Journal`` (dedupe, redaction, apply) with no WAL,
then advances the replica's applied sequence. Reads that carry
``x-min-watermark`` wait for it (``service.server.consistency``).

nats-py is asyncio; the gRPC server is threaded. The client's event loop
runs in one dedicated thread; every call from a gRPC thread goes through
``asyncio.run_coroutine_threadsafe`` with a timeout, so a stream that does
not answer turns into UNAVAILABLE, never a hung worker. Messages received
are handed to an applier thread so that applying never stalls the loop
(and with it the publish acks)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.js.client import JetStreamContext

from contactgraph.v1 import graph_events_pb2, wal_record_pb2
from graph.errors import EventIdConflict, GraphError, WalError
from graph.event_ids import event_digests, split_batch
from graph.events import event_to_proto
from graph.model import Event
from graph.store import GraphStore
from graph.wal_format import Batch, decode_events
from service.durability.journal import CommitResult, Journal
from service.server.config import StreamConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

MSG_ID_HEADER = "Nats-Msg-Id"


class StreamUnavailable(WalError):
    """The stream did not store (or acknowledge) the batch in time: it is
    not acknowledged."""


def batch_msg_id(event_ids: Sequence[str]) -> str:
    """The ``Nats-Msg-Id`` of a batch: the same ids in the same order give
    the same id, so an exact retry is dropped by JetStream."""
    digest = hashlib.sha256()
    for event_id in event_ids:
        encoded = event_id.encode("utf-8")
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return digest.hexdigest()


class AppliedSequence:
    """The highest stream sequence this replica has applied, and waiting
    for it to reach a value."""

    def __init__(self) -> None:
        self._value = 0
        self._changed = threading.Condition()

    @property
    def value(self) -> int:
        return self._value

    def advance(self, sequence: int) -> None:
        with self._changed:
            if sequence > self._value:
                self._value = sequence
                self._changed.notify_all()

    def wait(self, target: int, timeout_s: float | None) -> bool:
        """Whether ``target`` was reached within ``timeout_s`` (None: no limit)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._value >= target, timeout_s)


class StreamLog:
    """A connection to the JetStream stream, its asyncio loop in a thread
    of its own. ``connect`` raises StreamUnavailable if NATS cannot be
    reached or the stream cannot be created."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-loop", daemon=True)
        self._thread.start()
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._connected = threading.Event()

    def _call(self, coro: Coroutine[Any, Any, T], what: str, timeout_s: float | None = None) -> T:
        timeout = self.config.timeout_s if timeout_s is None else timeout_s
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            # A little slack over the coroutine's own timeout, so that its
            # error (more precise) usually wins.
            return future.result(timeout + 0.5)
        except TimeoutError:
            future.cancel()
            raise StreamUnavailable(f"{what}: NATS at {self.config.url} did not answer within {timeout:g}s") from None
        except (nats.errors.Error, OSError) as err:
            raise StreamUnavailable(f"{what}: NATS at {self.config.url}: {type(err).__name__}: {err}") from None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def connect(self) -> None:
        self._call(self._connect(), "connecting to the stream")

    async def _connect(self) -> None:
        config = self.config

        async def disconnected() -> None:
            self._connected.clear()
            log.warning("disconnected from NATS at %s; writes answer UNAVAILABLE until it returns", config.url)

        async def reconnected() -> None:
            self._connected.set()
            log.info("reconnected to NATS at %s", config.url)

        async def error(err: Exception) -> None:
            log.debug("NATS client: %s", err)

        nc = await nats.connect(config.servers, connect_timeout=config.timeout_s, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.2, disconnected_cb=disconnected, reconnected_cb=reconnected,
                                error_cb=error, name="contactgraph")
        self._nc = nc
        self._connected.set()
        js = nc.jetstream(timeout=config.timeout_s)
        wanted = js_api.StreamConfig(name=config.stream, subjects=[config.subject], num_replicas=config.replicas,
                                     storage=js_api.StorageType.FILE, duplicate_window=config.duplicate_window_s)
        try:
            await js.stream_info(config.stream)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(wanted)
            except nats.js.errors.BadRequestError:
                # Another replica created it meanwhile.
                await js.stream_info(config.stream)
        self._js = js

    def publish(self, payload: bytes, msg_id: str) -> js_api.PubAck:
        """Store ``payload``; returns JetStream's ack (its ``seq`` and
        whether it was a ``duplicate``). Raises StreamUnavailable."""
        if self._js is None:
            raise StreamUnavailable("the stream is not connected")
        if not self._connected.is_set():
            # While disconnected the client would buffer the publish and
            # send it on reconnect; refuse now instead of storing an
            # unacknowledged batch later.
            raise StreamUnavailable(f"not connected to NATS at {self.config.url}")
        js = self._js
        return self._call(js.publish(self.config.subject, payload, timeout=self.config.timeout_s,
                                     stream=self.config.stream, headers={MSG_ID_HEADER: msg_id}),
                          "publishing to the stream")

    def consume(self, start_sequence: int, on_message: Callable[[int, bytes], None]) -> None:
        """Call ``on_message(stream sequence, payload)`` for every message
        from ``start_sequence`` on, in order, on the loop's thread (keep it
        short: hand the work off)."""
        if self._js is None:
            raise StreamUnavailable("the stream is not connected")
        js = self._js

        async def deliver(msg: Msg) -> None:
            on_message(msg.metadata.sequence.stream, msg.data)

        async def subscribe() -> None:
            await js.subscribe(self.config.subject, cb=deliver, stream=self.config.stream, ordered_consumer=True,
                               config=js_api.ConsumerConfig(
                                   deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                                   opt_start_seq=max(start_sequence, 1)))

        self._call(subscribe(), "subscribing to the stream")

    def close(self) -> None:
        nc = self._nc
        if nc is not None:
            try:
                self._call(nc.close(), "closing the NATS connection")
            except StreamUnavailable as err:
                log.warning("%s", err)
        try:
            self._call(_cancel_tasks(), "stopping the NATS client's tasks")
        except StreamUnavailable as err:
            log.warning("%s", err)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=self.config.timeout_s)
        if not self._thread.is_alive():
            self._loop.close()


async def _cancel_tasks() -> None:
    """The client leaves tasks behind (a consumer's heartbeat checks):
    cancel them so that the loop stops clean."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class StreamJournal(Journal):
    """A Journal whose log is the stream: ``commit`` publishes and waits for
    the ack; the consumer applies, through the local Journal's commit (with
    no WAL), every record in stream order. ``on_applied(events)`` runs
    after each record is applied (the server updates safety and search)."""

    def __init__(self, store: GraphStore, stream: StreamLog, start_sequence: int = 1) -> None:
        super().__init__(store, None)
        self.stream = stream
        self.applied = AppliedSequence()
        self._start = start_sequence
        self._inbox: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._applier: threading.Thread | None = None
        self._on_applied: Callable[[list[Event]], None] = lambda events: None
        self._apply_failed: BaseException | None = None

    def start(self, on_applied: Callable[[list[Event]], None]) -> None:
        """Start consuming the stream from the start sequence."""
        self._on_applied = on_applied
        self._applier = threading.Thread(target=self._apply_loop, name="stream-apply", daemon=True)
        self._applier.start()
        self.stream.consume(self._start, lambda seq, data: self._inbox.put((seq, data)))
        log.info("consuming %s from sequence %d", self.stream.config.subject, self._start)

    def stop(self) -> None:
        self.stream.close()
        self._inbox.put(None)
        if self._applier is not None:
            self._applier.join(timeout=5)

    @property
    def broken(self) -> BaseException | None:
        return self._apply_failed if self._apply_failed is not None else super().broken

    def commit(self, events: Sequence[Event], *, messages: Sequence[graph_events_pb2.GraphEvent] | None = None,
               now: float | None = None) -> CommitResult:
        """Publish the batch and return once JetStream stored it; the
        result's ``watermark`` is its stream sequence. ``applied`` and
        ``duplicates`` are as this replica sees them (JetStream's duplicate
        flag counts the whole batch a duplicate); ``events`` is empty: the
        consumer applies them. Raises EventIdConflict (nothing published)
        and StreamUnavailable (not acknowledged)."""
        if self.broken is not None:
            raise StreamUnavailable(f"this replica stopped applying the stream: {self.broken}")
        ids = [event.event_id for event in events]
        with self.exclusive():
            store = self.store
            picked = split_batch(store.seen_ids, ids, event_digests(events))
            server_time = store.clock.now() if now is None else now
        if not picked:
            return CommitResult(0, len(events), self.applied.value, [])
        record = wal_record_pb2.WalRecord(first_sequence=0, server_time=server_time)
        if messages is not None:
            record.events.extend(messages)
        else:
            record.server_time = max([server_time, *(e.time for e in events)])
            record.events.extend(event_to_proto(e) for e in events)
        ack = self.stream.publish(record.SerializeToString(), batch_msg_id(ids))
        if ack.duplicate:
            return CommitResult(0, len(events), ack.seq, [])
        if not self.applied.wait(ack.seq, self.stream.config.own_apply_wait_s):
            log.warning("stream sequence %d acknowledged but not applied here within %gs", ack.seq,
                        self.stream.config.own_apply_wait_s)
        return CommitResult(len(picked), len(events) - len(picked), ack.seq, [])

    def _apply_loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            sequence, data = item
            if sequence <= self.applied.value:
                continue  # redelivered after a consumer reset
            try:
                self._apply(sequence, data)
            except BaseException as err:
                # Going on would apply later records without this one:
                # this replica stops applying (reads with a token beyond
                # here time out; writes answer UNAVAILABLE) until a restart.
                log.critical("cannot apply stream sequence %d, stopping: %s", sequence, err)
                self._apply_failed = err
                return
            self.applied.advance(sequence)

    def _apply(self, sequence: int, data: bytes) -> None:
        record = wal_record_pb2.WalRecord.FromString(data)
        batch = Batch(0, record.server_time, list(record.events))
        try:
            events = decode_events(batch)
            result = Journal.commit(self, events, messages=record.events, now=record.server_time)
        except (EventIdConflict, GraphError) as err:
            if self._failed is not None:
                raise
            # Deterministic on every replica (same records, same order): two
            # replicas accepted the same id with other content at once. The
            # record is skipped everywhere alike.
            log.error("stream sequence %d skipped: %s", sequence, err)
            return
        log.debug("applied stream sequence %d: %d events", sequence, result.applied)
        self._on_applied(result.events)
