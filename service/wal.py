"""The write-ahead log: every accepted batch is appended here and fsynced
before ApplyEvents answers.

- Records and segment files are laid out as ``graph.wal_format`` says.
- Group commit: ``append`` writes the frame (under the caller's lock, so log
  order is apply order) and returns a ticket; ``sync(ticket)`` waits until
  the log is durable up to it. Whoever finds no fsync running becomes the
  leader and fsyncs everything written so far; the others wait for it, so
  concurrent callers share one fsync.
- Segments rotate at ``segment_bytes``; a segment is fsynced whole before
  the next one is created (so only the newest can have a torn tail).
- ``open`` cuts a torn tail off the newest segment and logs how many bytes.
- An I/O error poisons the log: every later append and sync fails, since
  the store may hold events the log lost. Restart to recover.
- ``seal`` closes the open segment early (the journal does it after an
  erasure), so that what names the erased user sits in sealed segments,
  which ``compact_log`` can rewrite while the server goes on writing.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from contactgraph.v1 import wal_record_pb2
from graph.durable import fsync_dir
from graph.erasure import ErasureLedger
from graph.errors import EventIdConflict, WalCorruptError, WalError
from graph.model import Event
from graph.store import GraphStore
from graph.wal_format import (
    HEADER_SIZE,
    Segment,
    WalPosition,
    WalReader,
    check_header,
    decode_events,
    encode_frame,
    encode_header,
    event_users,
    list_segments,
    parse_record,
    redact,
    scan_segment,
    segment_name,
    torn_header,
)

from .config import WalConfig

log = logging.getLogger(__name__)

_REPLAY_CHUNK = 8192


@dataclass(frozen=True)
class Replayed:
    events: int
    records: int
    watermark: int
    position: WalPosition | None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class WriteAheadLog:
    """Append-only, thread-safe. Build with ``WriteAheadLog.open``."""

    def __init__(self, config: WalConfig, segment: Segment | None, size: int, next_sequence: int | None,
                 lock_fd: int = -1) -> None:
        self.config = config
        self._lock_fd = lock_fd
        self.directory = Path(config.directory)
        self._cond = threading.Condition(threading.Lock())
        # Appenders queue here, so a rotation waiting on _cond for a running
        # fsync cannot let another append slip into the sealed segment.
        self._append_lock = threading.Lock()
        self._segment = segment
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND) if segment is not None else -1
        self._size = size
        self._next_sequence = next_sequence
        self._written = 0  # bytes appended since open: tickets count these
        self._durable = 0
        self._syncing = False
        self._failed: BaseException | None = None
        self.fsyncs = 0
        self.appends = 0
        self.fsync_seconds = 0.0

    # -- opening -------------------------------------------------------
    @staticmethod
    def open(config: WalConfig) -> "WriteAheadLog":
        """Open (creating) the log; cut a torn tail off the newest segment
        and drop a newest segment left without records. Raises
        WalCorruptError for damage that is not a torn tail."""
        directory = Path(config.directory)
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(directory.parent)
        lock_fd = _lock(directory)
        try:
            while True:
                segments = list_segments(directory)
                if not segments:
                    return WriteAheadLog(config, None, 0, None, lock_fd)
                newest = segments[-1]
                found = _recover_newest(newest)
                if found is not None:
                    size, next_sequence = found
                    return WriteAheadLog(config, newest, size, next_sequence, lock_fd)
                newest.path.unlink()
                fsync_dir(directory)
        except BaseException:
            os.close(lock_fd)
            raise

    # -- writing -------------------------------------------------------
    @property
    def next_sequence(self) -> int | None:
        """The sequence the next record continues from; None for an empty log."""
        return self._next_sequence

    def append(self, record: wal_record_pb2.WalRecord) -> int:
        """Write one record (not yet durable) and return its ticket for
        ``sync``. Records must be appended in sequence order; one that
        starts past the end of the log opens a new segment."""
        n = len(record.events)
        if n == 0:
            raise ValueError("a WAL record holds at least one event")
        frame = encode_frame(record.SerializeToString())
        with self._append_lock, self._cond:
            self._check()
            first = record.first_sequence
            if self._next_sequence is not None and first < self._next_sequence:
                raise WalError(f"record at sequence {first} is behind the log, which continues at "
                               f"{self._next_sequence}")
            try:
                if (self._segment is None or first != self._next_sequence
                        or (self._size + len(frame) > self.config.segment_bytes and self._size > HEADER_SIZE)):
                    self._rotate(first)
                _write_all(self._fd, frame)
            except OSError as err:
                self._fail(err)
                raise WalError(f"cannot write the WAL: {err}") from err
            self._size += len(frame)
            self._written += len(frame)
            self._next_sequence = first + n
            self.appends += 1
            return self._written

    def sync(self, ticket: int) -> None:
        """Return once everything up to ``ticket`` is on disk. Raises
        WalError if the log failed."""
        with self._cond:
            while True:
                if self._durable >= ticket:
                    return
                self._check()
                if not self._syncing:
                    break
                self._cond.wait()
            self._syncing = True
            target, fd = self._written, self._fd
        started = time.perf_counter()
        try:
            if self.config.fsync:
                os.fdatasync(fd)
        except OSError as err:
            with self._cond:
                self._syncing = False
                self._fail(err)
                self._cond.notify_all()
            raise WalError(f"cannot fsync the WAL: {err}") from err
        with self._cond:
            self.fsyncs += 1
            self.fsync_seconds += time.perf_counter() - started
            self._durable = max(self._durable, target)
            self._syncing = False
            self._cond.notify_all()

    def seal(self) -> None:
        """Seal the open segment now (fsynced) and continue in a new one,
        unless it holds no record yet. Raises WalError if the log failed."""
        with self._append_lock, self._cond:
            self._check()
            if self._segment is None or self._size <= HEADER_SIZE or self._next_sequence is None:
                return
            try:
                self._rotate(self._next_sequence)
            except OSError as err:
                self._fail(err)
                raise WalError(f"cannot seal the WAL segment: {err}") from err

    def end(self) -> WalPosition | None:
        """Just after the last record written; None before any segment."""
        with self._cond:
            if self._segment is None:
                return None
            return WalPosition(self._segment.first_sequence, self._size)

    def close(self) -> None:
        """Sync what was written and close. Later appends fail."""
        if self.appends:
            log.info("WAL closed: %d records appended, %d group fsyncs (%.1f records each, %.2f ms each)",
                     self.appends, self.fsyncs, self.appends / max(self.fsyncs, 1),
                     1000 * self.fsync_seconds / max(self.fsyncs, 1))
        with self._cond:
            while self._syncing:
                self._cond.wait()
            if self._fd >= 0:
                try:
                    if self._failed is None and self.config.fsync:
                        os.fdatasync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = -1
                    self._durable = self._written
            if self._failed is None:
                self._failed = WalError("the WAL is closed")
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
            self._cond.notify_all()

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def _check(self) -> None:
        if self._failed is not None:
            raise WalError(f"the WAL is unusable after an earlier error: {self._failed}")

    def _fail(self, err: BaseException) -> None:
        log.critical("write-ahead log failed, refusing further writes: %s", err)
        self._failed = err

    def _rotate(self, first_sequence: int) -> None:
        """Seal the current segment (fsync) and start one at
        ``first_sequence``. Holds ``_cond``."""
        while self._syncing:
            self._cond.wait()
        if self._fd >= 0:
            if self.config.fsync:
                os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._durable = self._written
        path = self.directory / segment_name(first_sequence)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, encode_header(first_sequence))
            if self.config.fsync:
                os.fsync(fd)
                fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._segment = Segment(path, first_sequence)
        self._size = HEADER_SIZE
        log.info("WAL segment %s started", path.name)


def _lock(directory: Path) -> int:
    """Hold ``directory/LOCK`` for as long as the log is open (the kernel
    drops it when the process dies, however it dies): two servers
    appending to one log would interleave their sequences."""
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WalError(f"{directory} is in use by another process (is another server running on it?)") from None
    return fd


def _recover_newest(segment: Segment) -> tuple[int, int] | None:
    """Cut a torn tail off the newest segment; (good size, next sequence),
    or None if it holds no record (the caller removes it)."""
    data = segment.path.read_bytes()
    try:
        check_header(data, segment)
    except WalCorruptError:
        if not torn_header(data, segment):
            raise
        log.warning("WAL %s: cut %d bytes: a segment header torn on creation", segment.path.name, len(data))
        return None
    frames, damage = scan_segment(data)
    if damage is not None:
        if damage.intact_after:
            log.error("WAL %s: cut %d bytes at offset %d (%s); intact records follow the damaged one, "
                      "so this may be corruption rather than a torn write", segment.path.name,
                      damage.bad_bytes, damage.offset, damage.reason)
        else:
            log.warning("WAL %s: cut %d bytes of torn tail at offset %d (%s)", segment.path.name,
                        damage.bad_bytes, damage.offset, damage.reason)
        with open(segment.path, "r+b") as f:
            f.truncate(damage.offset)
            f.flush()
            os.fsync(f.fileno())
    if not frames:
        if damage is None:
            log.info("WAL %s: empty segment removed", segment.path.name)
        return None
    end, payload = frames[-1]
    record = parse_record(payload, f"{segment.path}:{end - len(payload)}")
    return end, record.first_sequence + len(record.events)


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


@dataclass(frozen=True)
class Compaction:
    """What ``compact_log`` did.

    ``removed``: segments deleted, wholly at or below the watermark;
    ``rewritten``: (old, new) paths of segments rewritten without what
    names an erased user; ``redacted``: events replaced by stand-ins;
    ``pending``: erase events after the watermark whose users the ledger
    does not hold yet (they, and what names those users, stay until a
    snapshot covers them); ``in_use``: a server holds the log, so its open
    segment was left alone; ``unscrubbed``: segments still naming a ledger
    user (at most that open one)."""

    removed: list[Path]
    rewritten: list[tuple[Path, Path]]
    redacted: int
    pending: int
    in_use: bool
    unscrubbed: list[Path]


def compact(directory: Path, watermark: int) -> list[Path]:
    """Remove segments all of whose records are at or below ``watermark``
    (a snapshot's). The newest segment always stays. Returns what was
    removed."""
    return compact_log(directory, watermark).removed


def compact_log(directory: Path, watermark: int, ledger: ErasureLedger | None = None) -> Compaction:
    """Compact the log against a snapshot: remove segments wholly at or
    below its ``watermark``, and rewrite every other segment that names a
    user in its ``ledger``: records at or below the watermark dropped
    (the newest segment keeps its last record, so that the log still
    says where it continues), events naming the user redacted. Sequence
    numbers do not change, so the log replays onto the snapshot as before.

    Each rewrite is crash-safe: the new segment is written under a
    temporary name, fsynced, renamed into place (over the old one when the
    name stays) and the directory fsynced; only then is an old segment of
    another name deleted. At every point the directory reads as a valid
    log: an old segment left beside its rewrite holds the same records,
    and readers skip what they have read already.

    While a server holds the log (its LOCK) its open segment is only read:
    the server seals the segment after every erasure and redacts events
    naming erased users before logging them, so that segment holds nothing
    to scrub unless it was written by an older build.

    With a ledger, compaction first checks that every erasure the log holds
    at or below the watermark is in it, and raises WalError before touching
    anything if one is not: the snapshot would then serve the user, and the
    log would no longer say they were erased."""
    directory = Path(directory)
    segments = list_segments(directory)
    if not segments:
        return Compaction([], [], 0, 0, False, [])
    removed: list[Path] = []
    rewritten: list[tuple[Path, Path]] = []
    unscrubbed: list[Path] = []
    redacted = pending = 0
    if ledger is not None:
        _check_erasures_kept(segments, watermark, ledger)
    lock_fd = _try_lock(directory)
    in_use = lock_fd is None
    try:
        if not in_use:
            for stale in directory.glob(f"*{_TMP}"):
                stale.unlink()
        for i, segment in enumerate(segments):
            newest = i == len(segments) - 1
            if not newest and segments[i + 1].first_sequence - 1 <= watermark:
                os.unlink(segment.path)
                fsync_dir(directory)
                removed.append(segment.path)
                continue
            records = _records(segment, torn_ok=newest)
            erased = _erased_in(records, ledger or ErasureLedger())
            pending += _pending_erasures(records, watermark, ledger or ErasureLedger())
            if not erased:
                continue
            if newest and in_use:
                unscrubbed.append(segment.path)
                continue
            new, n = _rewrite(directory, segment, records, watermark, erased, newest)
            redacted += n
            if new is None:
                removed.append(segment.path)
            else:
                rewritten.append((segment.path, new))
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    return Compaction(removed, rewritten, redacted, pending, in_use, unscrubbed)


_TMP = ".wal.tmp"


def _try_lock(directory: Path) -> int | None:
    """The log's LOCK, or None while a server holds it."""
    try:
        return _lock(directory)
    except WalError:
        return None


def _records(segment: Segment, *, torn_ok: bool) -> list[tuple[bytes, wal_record_pb2.WalRecord]]:
    """Every good record of a segment with its payload. A torn tail is
    left out where one may be (the newest segment); elsewhere damage
    raises WalCorruptError."""
    data = segment.path.read_bytes()
    try:
        check_header(data, segment)
    except WalCorruptError:
        if torn_ok and torn_header(data, segment):
            return []
        raise
    frames, damage = scan_segment(data)
    if damage is not None and not torn_ok:
        raise WalCorruptError(f"{segment.path}:{damage.offset}: {damage.reason} in a sealed segment")
    return [(bytes(payload), parse_record(payload, f"{segment.path}:{end - len(payload)}"))
            for end, payload in frames]


def _check_erasures_kept(segments: list[Segment], watermark: int, ledger: ErasureLedger) -> None:
    forgotten = 0
    for i, segment in enumerate(segments):
        if segment.first_sequence > watermark:
            break
        users = [msg.erase_user.user_id for _, record in _records(segment, torn_ok=i == len(segments) - 1)
                 for j, msg in enumerate(record.events)
                 if record.first_sequence + j <= watermark and msg.WhichOneof("kind") == "erase_user"]
        forgotten += len(set(users) - ledger.subset(users))
    if forgotten:
        raise WalError(f"{forgotten} user(s) erased in the log at or below watermark {watermark} are not in the "
                       "snapshot's erasure ledger: compacting would forget the erasure. Rebuild the snapshot from "
                       "the log, or with the previous snapshot's ledger")


def _erased_in(records: list[tuple[bytes, wal_record_pb2.WalRecord]], ledger: ErasureLedger) -> set[int]:
    """The ledger's users among those the records name (each distinct id
    looked up once)."""
    if not ledger:
        return set()
    return ledger.subset(u for _, record in records for msg in record.events for u in event_users(msg))


def _pending_erasures(records: list[tuple[bytes, wal_record_pb2.WalRecord]], watermark: int,
                      ledger: ErasureLedger) -> int:
    users = [msg.erase_user.user_id for _, record in records
             for j, msg in enumerate(record.events)
             if record.first_sequence + j > watermark and msg.WhichOneof("kind") == "erase_user"]
    return len(users) - len(ledger.subset(users)) if users else 0


def _rewrite(directory: Path, segment: Segment, records: list[tuple[bytes, wal_record_pb2.WalRecord]],
             watermark: int, erased: set[int], newest: bool) -> tuple[Path | None, int]:
    """Rewrite ``segment`` without records at or below the watermark and
    with events naming ``erased`` users redacted. Returns the new path
    (None if nothing was left, and the segment was deleted) and how many
    events were redacted."""
    kept = [(p, r) for p, r in records if r.first_sequence + len(r.events) - 1 > watermark]
    if not kept and newest:
        kept = records[-1:]
    if not kept:
        os.unlink(segment.path)
        fsync_dir(directory)
        return None, 0
    frames = []
    redacted = 0
    for payload, record in kept:
        hits = [j for j, msg in enumerate(record.events) if any(u in erased for u in event_users(msg))]
        for j in hits:
            record.events[j].CopyFrom(redact(record.events[j]))
        if hits:
            payload = record.SerializeToString()
            redacted += len(hits)
        frames.append(encode_frame(payload))
    first = kept[0][1].first_sequence
    target = directory / segment_name(first)
    tmp = directory / f"{target.name.removesuffix('.wal')}{_TMP}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, encode_header(first) + b"".join(frames))
        os.fsync(fd)
    finally:
        os.close(fd)
    # Same name: the rename replaces the old segment in one step. Another
    # name (records dropped from its front): the old one goes only once the
    # new one is durable; a reader that finds both reads the same records.
    os.replace(tmp, target)
    fsync_dir(directory)
    if target != segment.path:
        os.unlink(segment.path)
        fsync_dir(directory)
    log.info("WAL %s rewritten as %s: %d record(s) kept, %d event(s) redacted", segment.path.name, target.name,
             len(kept), redacted)
    return target, redacted
