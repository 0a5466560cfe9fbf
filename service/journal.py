"""The one write path into the live graph: dedupe, log, apply, then wait
for the log to be durable.

Dedupe, append and apply happen under one lock, so the order of the log is
the order of application and a record's sequence numbers are the store's
watermarks. The fsync wait happens outside it, so concurrent commits share
one fsync (``service.wal``). ApplyEvents commits through here; so will any
other state change that must survive a crash (guardian and safety changes
written as events)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from contactgraph.v1 import graph_events_pb2, wal_record_pb2
from graph.errors import GraphError
from graph.events import event_to_proto
from graph.model import Event
from graph.store import GraphStore

from .wal import WriteAheadLog

log = logging.getLogger(__name__)


class JournalFailed(GraphError):
    """The store and the log may disagree after an earlier failure: no more
    writes until a restart replays the log."""


@dataclass(frozen=True)
class CommitResult:
    """``events``: the events applied, in order (duplicates left out);
    ``watermark``: the sequence of the last one (or the store's watermark if
    none was applied)."""

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
        Raises WalError if the log cannot be written or synced, and
        JournalFailed after any earlier failure; in either case the batch
        must be treated as not acknowledged."""
        if messages is not None and len(messages) != len(events):
            raise ValueError(f"{len(messages)} messages for {len(events)} events")
        ticket = 0
        with self._lock:
            if self._failed is not None:
                raise JournalFailed(f"writes are refused after an earlier failure: {self._failed}")
            store = self._store
            seen = store.seen_ids
            picked: list[int] = []
            batch_ids: set[str] = set()
            for i, event in enumerate(events):
                eid = event.event_id
                if eid:
                    if eid in batch_ids or eid in seen:
                        continue
                    batch_ids.add(eid)
                picked.append(i)
            duplicates = len(events) - len(picked)
            if not picked:
                return CommitResult(0, duplicates, store.watermark, [])
            fresh = list(events) if duplicates == 0 else [events[i] for i in picked]
            if self._wal is not None:
                ticket = self._wal.append(self._record(store, fresh, picked, messages, now))
            try:
                result = store.apply_batch(fresh)
            except BaseException as err:
                self._fail(err)
                raise
            if result.applied != len(fresh):
                mismatch = JournalFailed(f"the store applied {result.applied} of {len(fresh)} new events: it was "
                                         "written to outside the journal, so the log no longer matches it")
                self._fail(mismatch)
                raise mismatch
        if self._wal is not None:
            self._wal.sync(ticket)
        return CommitResult(result.applied, duplicates, result.watermark, fresh)

    @staticmethod
    def _record(store: GraphStore, fresh: list[Event], picked: list[int],
                messages: Sequence[graph_events_pb2.GraphEvent] | None, now: float | None) -> wal_record_pb2.WalRecord:
        server_time = store.clock.now() if now is None else now
        record = wal_record_pb2.WalRecord(first_sequence=store.watermark + 1)
        if messages is not None:
            record.events.extend(messages[i] for i in picked)
        else:
            # The events' own times are already final: never clamp them.
            server_time = max(server_time, max(e.time for e in fresh))
            record.events.extend(event_to_proto(e) for e in fresh)
        record.server_time = server_time
        return record

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
