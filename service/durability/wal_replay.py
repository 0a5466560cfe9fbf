"""Reading the write-ahead log back into a store: at start-up on top of
the snapshot, and by a hot swap catching a new snapshot up with the log."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from graph.errors import EventIdConflict, WalError
from graph.model import Event
from graph.store import GraphStore
from graph.wal_format import WalPosition, WalReader, decode_events

log = logging.getLogger(__name__)

_REPLAY_CHUNK = 8192


@dataclass(frozen=True)
class Replayed:
    events: int
    records: int
    watermark: int
    position: WalPosition | None



@contextmanager
def _gc_paused() -> Iterator[None]:
    """Replay allocates millions of long-lived objects; cyclic collections
    over the growing heap would cost more than the replay itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def replay(directory: Path, store: GraphStore, *, start: WalPosition | None = None,
           on_batch: Callable[[int], None] | None = None) -> Replayed:
    """Apply the log's events after ``store.watermark`` to the store, in
    order; ``start`` resumes where an earlier replay stopped. Raises
    WalGapError if the log does not reach back to the store's watermark,
    WalError if the store counts a logged event as a duplicate (the snapshot
    is not of this log's history)."""
    reader = WalReader(directory, store.watermark, start=start)
    events = 0
    pending: list[Event] = []

    def flush() -> None:
        nonlocal events
        if not pending:
            return
        before = store.watermark
        try:
            result = store.apply_batch(pending)
        except EventIdConflict as err:
            raise WalError(f"replaying events {before + 1}..{before + len(pending)}: event {before + 1 + err.index} "
                           f"reuses an applied id with other content; the snapshot does not come from this "
                           "log's history") from None
        if result.applied != len(pending):
            raise WalError(f"replaying events {before + 1}..{before + len(pending)}: {result.duplicates} of "
                           "them were applied before; the snapshot does not come from this log's history")
        events += len(pending)
        if on_batch is not None:
            on_batch(events)
        pending.clear()

    with _gc_paused():
        for batch in reader:
            if batch.first_sequence != store.watermark + len(pending) + 1:
                raise WalError(f"replay expected sequence {store.watermark + len(pending) + 1}, "
                               f"the log has {batch.first_sequence}")
            pending.extend(decode_events(batch))
            if len(pending) >= _REPLAY_CHUNK:
                flush()
        flush()
    if reader.torn is not None:
        # After WriteAheadLog.open this is a record still being written (a
        # hot swap reads while commits go on); the caller reads on later.
        log.info("WAL replay stopped before an incomplete record: %d bytes (%s)", reader.torn.bad_bytes,
                 reader.torn.reason)
    return Replayed(events, reader.records, store.watermark, reader.position)

