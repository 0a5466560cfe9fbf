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
- ``open`` cuts a torn tail off the newest segment, after copying the cut
  bytes aside (``<segment>.torn-<UTC time>``), and logs where and how many.
  Any other damage, in any segment, stops the start with WalCorruptError
  naming the segment and offset and leaves the bytes as they are;
  ``repair_log`` (``contactgraph wal repair``) is the operator's choice.
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
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from contactgraph.v1 import graph_events_pb2 as ev_pb
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
    corruption_message,
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
    whole_frame,
)

from service.server.config import WalConfig

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
        self.closing = False  # set by close(): later failures are the shutdown's
        self.fsyncs = 0
        self.appends = 0
        self.fsync_seconds = 0.0

    # -- opening -------------------------------------------------------
    @staticmethod
    def open(config: WalConfig) -> "WriteAheadLog":
        """Open (creating) the log; cut a torn tail off the newest segment
        and drop a newest segment left without records. Raises
        WalCorruptError for damage that is not a torn tail (the files are
        left as they are)."""
        directory = Path(config.directory)
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(directory.parent)
        lock_fd = _lock(directory)
        try:
            sealed = False
            while True:
                segments = list_segments(directory)
                if not segments:
                    return WriteAheadLog(config, None, 0, None, lock_fd)
                newest = segments[-1]
                found = _recover_newest(newest, sealed=sealed)
                # Once the newest is gone, the one before it was sealed
                # (fsynced whole before the next began): it cannot be torn.
                sealed = True
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
        self.closing = True
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


def _recover_newest(segment: Segment, *, sealed: bool = False) -> tuple[int, int] | None:
    """Cut a torn tail off the newest segment (its bytes copied aside
    first); (good size, next sequence), or None if it holds no record (the
    caller removes it). ``sealed``: the segment was sealed, so nothing of
    it may be cut. Raises WalCorruptError, touching nothing, for any other
    damage."""
    data = segment.path.read_bytes()
    try:
        check_header(data, segment)
    except WalCorruptError:
        if sealed or not torn_header(data, segment):
            raise
        log.warning("WAL %s: cut %d bytes: a segment header torn on creation", segment.path.name, len(data))
        return None
    frames, damage = scan_segment(data)
    if damage is not None:
        if sealed or not damage.torn:
            raise WalCorruptError(corruption_message(segment.path, damage, sealed=sealed))
        aside = set_aside(segment.path, "torn", data[damage.offset:])
        log.warning("WAL %s: cut %d bytes of torn tail at offset %d (%s); they are kept in %s",
                    segment.path.name, damage.bad_bytes, damage.offset, damage.reason, aside.name)
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


def set_aside(path: Path, what: str, data: bytes) -> Path:
    """Write ``data`` durably to a new file ``<path>.<what>-<UTC time>``
    beside ``path`` (never over an existing one) and return its path. The
    name does not end in ``.wal``: readers never take it for a segment."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1000):
        target = path.with_name(f"{path.name}.{what}-{stamp}" + (f"-{n}" if n else ""))
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        return target
    raise WalError(f"{path}: cannot find a free name to set {what} bytes aside")


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
    if damage is not None and not (torn_ok and damage.torn):
        raise WalCorruptError(corruption_message(segment.path, damage, sealed=not torn_ok))
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


@dataclass(frozen=True)
class Loss:
    """A damaged stretch of a segment that ``repair_log`` could not read:
    bytes ``start..end`` of ``segment`` (the original, kept in the copy set
    aside), ``records`` whole records known to be in it (None: not known),
    and the sequences ``first..last`` whose events are gone (replaced by
    stand-ins), or None where nothing after the damage says which."""

    segment: Path
    start: int
    end: int
    reason: str
    records: int | None = None
    sequences: tuple[int, int] | None = None

    def describe(self) -> str:
        what = f"{self.segment.name} bytes {self.start}..{self.end} ({self.end - self.start} bytes, {self.reason})"
        if self.sequences is not None:
            first, last = self.sequences
            what += f": events {first}..{last} lost ({last - first + 1}), replaced by stand-ins that change nothing"
        elif self.records is not None:
            what += f": {self.records} record(s) lost"
        return what


@dataclass(frozen=True)
class Repair:
    """What ``repair_log`` did: ``rewritten``: (segment, copy of its
    original bytes) for each segment it rewrote; ``losses``: what was not
    kept; ``kept``: records kept in the rewritten segments; ``mended``:
    records kept whole although their length field was damaged."""

    rewritten: list[tuple[Path, Path]]
    losses: list[Loss]
    kept: int
    mended: int

    @property
    def lost_events(self) -> int:
        return sum(s[1] - s[0] + 1 for s in (loss.sequences for loss in self.losses) if s is not None)

    def lines(self) -> list[str]:
        """The report `contactgraph wal repair` prints."""
        if not self.rewritten:
            return ["no damage found: nothing changed"]
        out = [f"rewrote {path.name} ({self.kept} intact record(s) kept); its original bytes are in {aside.name}"
               for path, aside in self.rewritten]
        if self.mended:
            out.append(f"{self.mended} record(s) kept whole although their length field was damaged")
        out += [f"lost: {loss.describe()}" for loss in self.losses]
        if any(loss.sequences is None and loss.records != 0 for loss in self.losses):
            out.append("where no events are named, how many the bytes held is not known; at the end of the log "
                       "the next events take their sequence numbers, and clients may resend them")
        out.append(f"{self.lost_events} event(s) known lost")
        return out


_STAND_INS_PER_RECORD = 10_000


def repair_log(directory: Path) -> Repair:
    """Make a damaged log readable again, keeping every record that is
    intact, before and after each damaged stretch, in every segment.

    Each damaged segment is copied aside (``<segment>.damaged-<UTC time>``,
    fsynced) and then replaced, through a temporary file and a rename, by a
    segment holding: its header (rebuilt from the file name if damaged),
    every frame whose CRC holds (found again after damage by trying every
    offset), records whose only damage is their length field, and in place
    of each lost stretch, stand-in events (no-ops, ``lost:`` ids) for the
    sequence numbers the records around it say it held, so that the log's
    numbering, and so every snapshot's watermark, still holds. A torn tail
    of the newest segment is cut, as a start would cut it.

    A lost stretch at the end of a sealed segment is numbered up to the
    next segment's first sequence; if the log legitimately jumped there (a
    newer snapshot was loaded), the stand-ins cover events that were never
    in it, which only matters to a replay from a snapshot older than that
    jump. Refuses (WalError) while a server holds the log."""
    directory = Path(directory)
    lock_fd = _lock(directory)
    try:
        segments = list_segments(directory)
        rewritten: list[tuple[Path, Path]] = []
        losses: list[Loss] = []
        kept = mended = 0
        for i, segment in enumerate(segments):
            newest = i == len(segments) - 1
            following = None if newest else segments[i + 1].first_sequence
            plan = _plan_repair(segment, newest, following)
            if plan is None:
                continue
            records, lost, n_mended = plan
            aside = set_aside(segment.path, "damaged", segment.path.read_bytes())
            _write_segment(directory, segment, records)
            rewritten.append((segment.path, aside))
            losses += lost
            kept += sum(1 for r in records if not _is_stand_in(r))
            mended += n_mended
            log.warning("WAL %s repaired: original bytes in %s; %s", segment.path.name, aside.name,
                        "; ".join(loss.describe() for loss in lost) or "header rebuilt")
        return Repair(rewritten, losses, kept, mended)
    finally:
        os.close(lock_fd)


def _is_stand_in(record: wal_record_pb2.WalRecord) -> bool:
    return bool(record.events) and record.events[0].event_id.startswith(LOST_PREFIX)


def _plan_repair(segment: Segment, newest: bool, following: int | None
                 ) -> tuple[list[wal_record_pb2.WalRecord], list[Loss], int] | None:
    """The records a repaired ``segment`` holds and what was lost, or None
    if it needs no repair (or, a newest segment torn while its header was
    written, only what a start does anyway)."""
    data = segment.path.read_bytes()
    losses: list[Loss] = []
    try:
        check_header(data, segment)
    except WalCorruptError as err:
        if newest and torn_header(data, segment):
            return None
        losses.append(Loss(segment.path, 0, min(len(data), HEADER_SIZE), f"segment header: {err}", 0))
    # Walk the frames: (payload, start offset) of each good one, damage
    # stretches between them.
    found: list[tuple[wal_record_pb2.WalRecord, int]] = []
    gaps: list[tuple[int, int, str, bool]] = []  # start, end, reason, torn
    n_mended = 0
    offset = HEADER_SIZE
    while offset < len(data):
        frames, damage = scan_segment(data, offset)
        start = offset
        for end, payload in frames:
            found.append((parse_record(payload, f"{segment.path}:{start}"), start))
            start = end
        if damage is None:
            break
        stop = damage.resume if damage.resume is not None else len(data)
        whole = whole_frame(data, damage.offset, stop)
        if whole is not None:
            found.append((parse_record(whole, f"{segment.path}:{damage.offset}"), damage.offset))
            n_mended += 1
        else:
            gaps.append((damage.offset, stop, damage.reason, newest and damage.torn))
        if damage.resume is None:
            break
        offset = damage.resume
    if not losses and not gaps and not n_mended:
        return None
    # Number the result: records in increasing sequence; a record behind
    # the one before it is a stray (a frame found inside damaged bytes) and
    # dropped; a jump between two kept records is what the gap between them
    # held.
    records: list[wal_record_pb2.WalRecord] = []
    expected = segment.first_sequence
    last_time = 0.0
    g = 0

    def stretch_before(at: int) -> list[tuple[int, int, str, bool]]:
        nonlocal g
        out = []
        while g < len(gaps) and gaps[g][0] < at:
            out.append(gaps[g])
            g += 1
        return out

    for record, at in found:
        before = stretch_before(at)
        if record.first_sequence < expected or not record.events:
            losses.append(Loss(segment.path, at, at, "a frame behind the log's sequence, found inside damaged "
                               "bytes: dropped", 1))
            continue
        missing = (expected, record.first_sequence - 1) if record.first_sequence > expected else None
        losses += _losses(segment.path, before, missing)
        if missing is not None:
            records += _stand_ins(missing[0], missing[1], record.server_time)
        records.append(record)
        expected = record.first_sequence + len(record.events)
        last_time = record.server_time
    tail = stretch_before(len(data) + 1)
    if tail:
        missing = (expected, following - 1) if following is not None and following > expected else None
        losses += _losses(segment.path, tail, missing)
        if missing is not None:
            records += _stand_ins(missing[0], missing[1], last_time)
    return records, losses, n_mended


def _losses(path: Path, stretches: list[tuple[int, int, str, bool]], missing: tuple[int, int] | None) -> list[Loss]:
    """Losses for consecutive damaged stretches between two kept records
    (the events missing between those records go with the first)."""
    out = []
    for k, (start, end, reason, torn) in enumerate(stretches):
        why = "torn tail: a write cut short, never acknowledged" if torn else reason
        out.append(Loss(path, start, end, why, 0 if torn else None, missing if k == 0 else None))
    return out


LOST_PREFIX = "lost:"


def _stand_ins(first: int, last: int, server_time: float) -> list[wal_record_pb2.WalRecord]:
    """Records of no-op events for sequences ``first..last`` (each with a
    random id, so no client id, and no other log's stand-in, matches)."""
    out = []
    for start in range(first, last + 1, _STAND_INS_PER_RECORD):
        stop = min(start + _STAND_INS_PER_RECORD - 1, last)
        out.append(wal_record_pb2.WalRecord(
            first_sequence=start, server_time=server_time,
            events=[ev_pb.GraphEvent(event_id=f"{LOST_PREFIX}{seq}:{secrets.token_hex(8)}")
                    for seq in range(start, stop + 1)]))
    return out


def _write_segment(directory: Path, segment: Segment, records: list[wal_record_pb2.WalRecord]) -> None:
    """Replace ``segment`` with a header and ``records``: a temporary file,
    fsynced, renamed over it, the directory fsynced."""
    tmp = directory / f"{segment.path.name.removesuffix('.wal')}{_TMP}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, encode_header(segment.first_sequence)
                   + b"".join(encode_frame(r.SerializeToString()) for r in records))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, segment.path)
    fsync_dir(directory)
