"""The write-ahead log's writer: every accepted batch is appended here and
fsynced before ApplyEvents answers.

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

The rest of the log's life is beside this module: reading it back into a
store (``wal_replay``), compaction and erasure scrubbing (``wal_compact``),
and the operator's repair of a damaged log (``wal_repair``). The helpers
they share with the writer (``write_all``, ``lock_log``, ``set_aside``,
``TMP_SUFFIX``) are here.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path

from contactgraph.v1 import wal_record_pb2
from graph.durable import fsync_dir
from graph.errors import WalCorruptError, WalError
from graph.wal_format import (
    HEADER_SIZE,
    Segment,
    WalPosition,
    check_header,
    corruption_message,
    encode_frame,
    encode_header,
    list_segments,
    parse_record,
    scan_segment,
    segment_name,
    torn_header,
)
from service.server.config import WalConfig

log = logging.getLogger(__name__)

# The suffix of a segment being rewritten (compaction, repair): not
# ``.wal``, so readers never take a half-written one for a segment.
TMP_SUFFIX = ".wal.tmp"


def write_all(fd: int, data: bytes) -> None:
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
    def open(config: WalConfig) -> WriteAheadLog:
        """Open (creating) the log; cut a torn tail off the newest segment
        and drop a newest segment left without records. Raises
        WalCorruptError for damage that is not a torn tail (the files are
        left as they are)."""
        directory = Path(config.directory)
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(directory.parent)
        lock_fd = lock_log(directory)
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
                write_all(self._fd, frame)
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
            write_all(fd, encode_header(first_sequence))
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


def lock_log(directory: Path) -> int:
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
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        return target
    raise WalError(f"{path}: cannot find a free name to set {what} bytes aside")


