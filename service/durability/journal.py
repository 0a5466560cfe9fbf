"""The one write path into the live graph: dedupe, log, apply, then wait
for the log to be durable.

Dedupe, append and apply happen under one lock, so the order of the log is
the order of application and a record's sequence numbers are the store's
watermarks. The fsync wait happens outside it, so concurrent commits share
one fsync (``service.durability.wal``). ApplyEvents commits through here; so will any
other state change that must survive a crash (guardian and safety changes
written as events).

Erasure: once a user is erased, an event naming them changes nothing, so
it is logged and applied redacted (``graph.wal_format.redact``): the log
never writes the id again. After a batch that erases someone the open
segment is sealed, so everything naming them sits in sealed segments that
``wal compact`` can rewrite while the server runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from contactgraph.v1 import graph_events_pb2, wal_record_pb2
from graph.errors import GraphError
from graph.event_ids import event_digests, split_batch
from graph.events import event_to_proto
from graph.model import Event, EventKind
from graph.store import GraphStore
from graph.wal_format import redact, redacted_event
from service.durability.wal import WriteAheadLog

log = logging.getLogger(__name__)


class JournalFailed(GraphError):
    """The store and the log may disagree after an earlier failure: no more
    writes until a restart replays the log."""


@dataclass(frozen=True)
class CommitResult:
    """``events``: the events applied, in order (duplicates left out; an
    event naming an erased user as its redacted stand-in); ``watermark``:
    the sequence of the last one (or the store's watermark if none was
    applied)."""

    applied: int
    duplicates: int
    watermark: int
    events: list[Event]


class Journal:
    """Commits batches to a store, through a write-ahead log unless ``wal``
    is None (then an acknowledged batch dies with the process)."""

    def __init__(self, store: GraphStore, wal: WriteAheadLog | None = None) -> None:
        self._store = store
        self._wal = wal
        self._lock = threading.Lock()
        self._failed: BaseException | None = None
        self._on_failure: list[Callable[[BaseException], None]] = []
        self._reported = False

    @property
    def store(self) -> GraphStore:
        return self._store

    @property
    def wal(self) -> WriteAheadLog | None:
        return self._wal

    def commit(self, events: Sequence[Event], *, messages: Sequence[graph_events_pb2.GraphEvent] | None = None,
               now: float | None = None) -> CommitResult:
        """Apply validated events in order, each event id once, and return
        when they are durable.

        ``messages``: the GraphEvents the events were converted from (same
        length and order); they are logged as sent, with ``now`` (the clock
        they were validated against), so replay converts them the same way.
        Without them the events are converted back to messages.
        Raises EventIdConflict (nothing applied) if an event reuses an
        applied id, or one earlier in the batch, with other content; WalError
        if the log cannot be written or synced, and JournalFailed after any
        earlier failure; in either case the batch must be treated as not
        acknowledged."""
        if messages is not None and len(messages) != len(events):
            raise ValueError(f"{len(messages)} messages for {len(events)} events")
        try:
            return self._commit(events, messages, now)
        except BaseException:
            self._report_failure()
            raise

    def on_failure(self, callback: Callable[[BaseException], None]) -> None:
        """Call ``callback(error)`` once, when writes become impossible
        until a restart (the log failed to write or sync, or the journal
        failed). The server turns its health to NOT_SERVING with it."""
        self._on_failure.append(callback)
        self._report_failure()

    @property
    def broken(self) -> BaseException | None:
        """Why no write can be made durable any more (None while they can)."""
        if self._failed is not None:
            return self._failed
        return self._wal.failed if self._wal is not None else None

    def _report_failure(self) -> None:
        err = self.broken
        # A closed log is a shutdown, not a failure.
        if err is None or self._reported or (self._wal is not None and self._wal.closing):
            return
        self._reported = True
        for callback in self._on_failure:
            callback(err)

    def _commit(self, events: Sequence[Event], messages: Sequence[graph_events_pb2.GraphEvent] | None,
                now: float | None) -> CommitResult:
        ticket = 0
        digests = event_digests(events)
        with self._lock:
            if self._failed is not None:
                raise JournalFailed(f"writes are refused after an earlier failure: {self._failed}")
            store = self._store
            # Raises EventIdConflict before anything is logged or applied:
            # the whole batch is refused.
            picked = split_batch(store.seen_ids, [event.event_id for event in events], digests)
            duplicates = len(events) - len(picked)
            if not picked:
                return CommitResult(0, duplicates, store.watermark, [])
            fresh = list(events) if duplicates == 0 else [events[i] for i in picked]
            fresh_digests = digests if duplicates == 0 else [digests[i] for i in picked]
            server_time = store.clock.now() if now is None else now
            may_redact = bool(store.ledger) or any(e.kind == EventKind.ERASE_USER for e in fresh)
            logged: Sequence[graph_events_pb2.GraphEvent] = ()
            if messages is not None:
                # Indexing a protobuf repeated field builds a wrapper per
                # event: the log copies the whole field when it can.
                logged = messages if duplicates == 0 and not may_redact else [messages[i] for i in picked]
            elif self._wal is not None or may_redact:
                # The events' own times are already final: never clamp them.
                server_time = max(server_time, max(e.time for e in fresh))
                logged = [event_to_proto(e) for e in fresh]
            erases = False
            if may_redact:
                logged = list(logged)
                erases = _redact_erased(store, fresh, logged, server_time)
                # A redacted stand-in is another event (and id) than the one sent.
                fresh_digests = event_digests(fresh)
            if self._wal is not None:
                record = wal_record_pb2.WalRecord(first_sequence=store.watermark + 1, server_time=server_time)
                record.events.extend(logged)
                ticket = self._wal.append(record)
            try:
                result = store.apply_batch(fresh, deduplicated=True, digests=fresh_digests)
            except BaseException as err:
                self._fail(err)
                raise
            if result.applied != len(fresh):
                mismatch = JournalFailed(f"the store applied {result.applied} of {len(fresh)} new events: it was "
                                         "written to outside the journal, so the log no longer matches it")
                self._fail(mismatch)
                raise mismatch
            if erases and self._wal is not None:
                self._wal.seal()
        if self._wal is not None:
            self._wal.sync(ticket)
        return CommitResult(result.applied, duplicates, result.watermark, fresh)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """No commit runs while this is held (the hot swap uses it)."""
        with self._lock:
            yield

    def attach(self, store: GraphStore) -> None:
        """Commit to ``store`` from now on; call inside ``exclusive``. The
        store must already hold every logged event (replayed to the end)."""
        wal = self._wal
        if wal is not None and wal.next_sequence is not None and store.watermark + 1 < wal.next_sequence:
            raise JournalFailed(f"store at watermark {store.watermark} is behind the log, which continues at "
                                f"{wal.next_sequence}")
        self._store = store

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def _fail(self, err: BaseException) -> None:
        log.critical("journal failed, refusing further writes until a restart: %s", err)
        self._failed = err


def _redact_erased(store: GraphStore, events: list[Event], messages: list[graph_events_pb2.GraphEvent],
                   server_time: float) -> bool:
    """Replace, in both lists, every event naming a user erased before it
    (in the store, or earlier in this batch) by its redacted stand-in.
    Returns whether the batch erases anyone."""
    erased_now: set[int] = set()
    erases = False
    for i, e in enumerate(events):
        users = (e.actor, e.target) if e.target > 0 else (e.actor,)
        if any(u in erased_now or store.is_erased(u) for u in users):
            messages[i] = redact(messages[i])
            events[i] = redacted_event(messages[i], server_time)
        elif e.kind == EventKind.ERASE_USER:
            erased_now.add(e.actor)
            erases = True
    return erases
