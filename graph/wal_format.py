"""The write-ahead log on disk, and reading it back.

Size (over 400 lines): the frame layout, the reader and the damage scan
share it; the server's WAL and the rebuild both read through this file.

The serving side (``service.durability.wal``) appends to it; the offline rebuild reads
it as one more event source, so the format and the reader live here.

A WAL directory holds segment files named ``<first sequence>.wal`` (20
digits, so names sort in sequence order). A segment is a 16-byte header
(``MAGIC`` then the first sequence, int64 little-endian) and then frames::

    uint32 LE  payload length
    uint32 LE  crc32 of the 4 length bytes followed by the payload
    payload    a serialized ``contactgraph.v1.WalRecord``

Records carry consecutive sequence numbers (``GraphStore.watermark``
semantics: the n-th event applied has sequence n); a new segment starts a
new run and may begin after a gap, for instance when a newer snapshot was
loaded than the log reached.

Only the newest segment can end in a torn frame (the writer seals a segment
with an fsync before starting the next); readers stop there, the writer
cuts it off when it opens the log. A torn frame is what a write cut short
leaves: nothing good anywhere after it, and either a frame whose length
runs past the end of the file or only zeros. Every other bad frame is
corruption, and no reader skips it: a frame whose CRC fails although it
fits in the file (the bytes were written whole, then changed), a length
field damaged so that the last frame seems to run past the end (the bytes
there still check out as a whole frame under the right length), and
above all a bad frame with a good one after it, found by trying every
later offset for a frame whose CRC holds. Readers raise WalCorruptError
naming the segment and offset; ``service.durability.wal.repair_log`` is the
operator's way past it.

Repair replaces the events of records it could not read, where the
sequence numbers around them say how many there were, by stand-ins like
redacted ones (below) with a random ``lost:<sequence>:`` event id, so the
numbering stays that of the original log.

An event that named an erased user may be *redacted*: replaced, in its
place, by a GraphEvent with no kind, no ids, its original event time and a
random ``redacted:`` event id (so a log given twice to a rebuild still
counts it once). It keeps its sequence number and reads back as an event
that changes nothing (``EventKind.ERASE_USER`` of user 0, which no store
gives a row).
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from contactgraph.v1 import graph_events_pb2 as pb
from contactgraph.v1 import wal_record_pb2

from .errors import InvalidEvent, WalCorruptError, WalGapError
from .events import EDGE_KINDS, event_from_proto
from .model import Event, EventKind
from .table import EventTable

log = logging.getLogger(__name__)

__all__ = [
    "Batch",
    "Damage",
    "Segment",
    "WalPosition",
    "WalReader",
    "check_header",
    "corruption_message",
    "decode_events",
    "encode_frame",
    "encode_header",
    "event_users",
    "is_wal_path",
    "list_segments",
    "next_good_frame",
    "parse_record",
    "read_wal_table",
    "redact",
    "redacted_event",
    "scan_segment",
    "segment_name",
    "torn_header",
    "whole_frame",
]

MAGIC = b"CGWAL\x00\x00\x01"
HEADER = struct.Struct("<8sq")
HEADER_SIZE = HEADER.size
FRAME = struct.Struct("<II")
FRAME_SIZE = FRAME.size
MAX_RECORD_BYTES = 64 << 20
SUFFIX = ".wal"
_NAME = re.compile(r"^(\d{20})\.wal$")


@dataclass(frozen=True)
class Segment:
    path: Path
    first_sequence: int


@dataclass(frozen=True, order=True)
class WalPosition:
    """Just after a record: the segment (by its first sequence) and the byte
    offset in it."""

    segment: int
    offset: int


@dataclass(frozen=True)
class Damage:
    """Where a segment stops being readable. ``offset``: the first byte that
    is not part of a good frame; ``size``: the file's length; ``resume``:
    where the next good frame after it starts (None: no good frame follows);
    ``torn``: it can be a write cut short by a crash (see the module
    docstring), the only damage a writer may cut off by itself."""

    offset: int
    size: int
    reason: str
    resume: int | None = None
    torn: bool = False

    @property
    def intact_after(self) -> bool:
        """A good frame follows the bad bytes: corruption, not a torn write."""
        return self.resume is not None

    @property
    def bad_bytes(self) -> int:
        """Bytes from ``offset`` up to the next good frame or the end."""
        return (self.resume if self.resume is not None else self.size) - self.offset

    def rebased(self, base: int) -> Damage:
        """The same damage in a file read from byte ``base`` on."""
        return Damage(base + self.offset, base + self.size, self.reason,
                      None if self.resume is None else base + self.resume, self.torn)


@dataclass(frozen=True)
class Batch:
    """Events of one record at or after the reader's start: ``events[i]``
    has sequence ``first_sequence + i``; convert them against
    ``server_time`` (see ``decode_events``)."""

    first_sequence: int
    server_time: float
    events: list[pb.GraphEvent]

    @property
    def last_sequence(self) -> int:
        return self.first_sequence + len(self.events) - 1


def segment_name(first_sequence: int) -> str:
    return f"{first_sequence:020d}{SUFFIX}"


def encode_header(first_sequence: int) -> bytes:
    return HEADER.pack(MAGIC, first_sequence)


def _crc(length: bytes, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(length)) & 0xFFFFFFFF


def encode_frame(payload: bytes) -> bytes:
    """One frame: length, crc32 and the payload (a serialized WalRecord)."""
    if len(payload) > MAX_RECORD_BYTES:
        raise ValueError(f"WAL record of {len(payload)} bytes is over {MAX_RECORD_BYTES}")
    length = struct.pack("<I", len(payload))
    return length + struct.pack("<I", _crc(length, payload)) + payload


def list_segments(directory: Path) -> list[Segment]:
    """The segments of a WAL directory in sequence order (other files are
    ignored); [] if the directory does not exist."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append(Segment(path, int(match.group(1))))
    return sorted(found, key=lambda s: s.first_sequence)


def is_wal_path(path: Path) -> bool:
    """A segment file, or a directory holding segments."""
    path = Path(path)
    if path.is_dir():
        return bool(list_segments(path))
    return path.name.endswith(SUFFIX)


def check_header(data: bytes, segment: Segment) -> None:
    """Raise WalCorruptError unless ``data`` starts with this segment's
    header."""
    if len(data) < HEADER_SIZE:
        raise WalCorruptError(f"{segment.path}:0: {len(data)} bytes, shorter than a segment header{REPAIR_HINT}")
    magic, first = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WalCorruptError(f"{segment.path}:0: not a WAL segment of this format (bad magic {magic!r})"
                              f"{REPAIR_HINT}")
    if first != segment.first_sequence:
        raise WalCorruptError(f"{segment.path}:8: header says first sequence {first}, the name says "
                              f"{segment.first_sequence}{REPAIR_HINT}")


def torn_header(data: bytes, segment: Segment) -> bool:
    """Is this what a segment cut short while its header was written looks
    like (a prefix of the header, or zeros)?"""
    return not data.strip(b"\0") or (len(data) < HEADER_SIZE and encode_header(segment.first_sequence).startswith(data))


def _frame_at(data: bytes | memoryview, offset: int, end: int) -> tuple[memoryview | None, str]:
    """The payload of the good frame at ``offset``, or (None, why not)."""
    if end - offset < FRAME_SIZE:
        return None, f"{end - offset} bytes left, short of a frame header"
    length, crc = FRAME.unpack_from(data, offset)
    if length > MAX_RECORD_BYTES:
        return None, f"frame length {length} is implausible"
    stop = offset + FRAME_SIZE + length
    if stop > end:
        return None, f"frame of {length} bytes runs {stop - end} bytes past the end"
    payload = memoryview(data)[offset + FRAME_SIZE: stop]
    if _crc(bytes(memoryview(data)[offset: offset + 4]), payload) != crc:
        return None, "crc32 mismatch"
    return payload, ""


def scan_segment(data: bytes, start: int = HEADER_SIZE) -> tuple[list[tuple[int, memoryview]], Damage | None]:
    """Good frames of a segment's bytes from ``start``: (offset just after
    the frame, payload) in order, and where they stop if not at the end
    (with where good frames resume, and whether it can be a torn write)."""
    frames: list[tuple[int, memoryview]] = []
    offset, end = start, len(data)
    while offset < end:
        payload, reason = _frame_at(data, offset, end)
        if payload is None:
            resume = next_good_frame(data, offset + 1, end)
            torn = resume is None and _cut_short(data, offset, end)
            return frames, Damage(offset, end, reason, resume, torn)
        offset += FRAME_SIZE + len(payload)
        frames.append((offset, payload))
    return frames, None


def _cut_short(data: bytes, offset: int, end: int) -> bool:
    """Can the bytes from ``offset`` to ``end`` (no good frame among them)
    be a last write cut short, rather than a written frame damaged since?"""
    if not data[offset:end].strip(b"\0"):
        return True  # space the file system gave the file, the write never filled (a frame is never zeros)
    if end - offset < FRAME_SIZE:
        return True
    (length,) = struct.unpack_from("<I", data, offset)
    if offset + FRAME_SIZE + length <= end:
        return False  # the whole frame is there and fails its CRC: it changed after it was written
    # Running past the end is what a cut write looks like, unless the length
    # field itself was damaged: then the rest is a whole frame under the
    # length it should have.
    return whole_frame(data, offset, end) is None


def whole_frame(data: bytes | memoryview, offset: int, stop: int) -> memoryview | None:
    """The payload if the bytes ``offset..stop`` are one frame whose length
    field alone is wrong: its CRC holds for the length ``stop - offset -
    FRAME_SIZE``. None otherwise."""
    length = stop - offset - FRAME_SIZE
    if length < 1 or length > MAX_RECORD_BYTES:
        return None
    (crc,) = struct.unpack_from("<I", data, offset + 4)
    payload = memoryview(data)[offset + FRAME_SIZE: stop]
    return payload if _crc(struct.pack("<I", length), payload) == crc else None


_RESYNC_CHUNK = 1 << 20


def next_good_frame(data: bytes | memoryview, start: int, end: int) -> int | None:
    """The offset of the first good frame (CRC holds) starting at or after
    ``start`` and ending by ``end``; None if there is none. Every offset is
    tried: after damage nothing says where the next frame begins. Only
    offsets whose length field fits in what is left get a CRC computed
    (found in numpy, a chunk at a time), so a segment of protobuf payloads
    is scanned in milliseconds."""
    arr = np.frombuffer(data, dtype=np.uint8)
    pos = start
    last = end - FRAME_SIZE - 1  # the last offset where a frame of one byte fits
    while pos <= last:
        stop = min(pos + _RESYNC_CHUNK, last + 1)
        n = stop - pos
        w = arr[pos: stop + 3].astype(np.uint32)
        lengths = w[:n] | (w[1: n + 1] << 8) | (w[2: n + 2] << 16) | (w[3: n + 3] << 24)
        room = (end - FRAME_SIZE) - np.arange(pos, stop, dtype=np.int64)
        for i in np.flatnonzero((lengths >= 1) & (lengths.astype(np.int64) <= room)).tolist():
            if _frame_at(data, pos + i, end)[0] is not None:
                return pos + i
        pos = stop
    return None


REPAIR_HINT = ("; the bytes on disk are left as they are. `contactgraph wal repair --data-dir DIR` (or "
               "--wal-dir) sets the segment aside and rewrites it with every intact record, reporting what was lost")


def corruption_message(path: Path, damage: Damage, *, sealed: bool) -> str:
    """Why a segment is refused: file and byte offset, what is wrong, what
    follows, and the operator's way out."""
    where = " in a sealed segment" if sealed else ""
    if damage.resume is not None:
        after = (f"; intact records follow at offset {damage.resume}, so this is corruption, not a torn write "
                 f"({damage.bad_bytes} bytes unreadable)")
    elif damage.torn:
        after = f" ({damage.bad_bytes} bytes at the end of a segment sealed before the next one began)"
    else:
        after = (f"; a whole record written at offset {damage.offset} fails its check, so this is corruption, "
                 f"not a torn write ({damage.bad_bytes} bytes unreadable)")
    return f"{path}:{damage.offset}: {damage.reason}{where}{after}{REPAIR_HINT}"


def parse_record(payload: bytes | memoryview, where: str) -> wal_record_pb2.WalRecord:
    record = wal_record_pb2.WalRecord()
    try:
        record.ParseFromString(bytes(payload))
    except DecodeError as err:
        # The crc matched: this is a bug or a foreign file, not a torn write.
        raise WalCorruptError(f"{where}: undecodable WalRecord: {err}") from None
    return record


class WalReader:
    """Batches of the log after a sequence number, checked for gaps.

    Iterate it for ``Batch``es holding exactly the events with sequence >
    ``after``, in order; afterwards ``position`` is just after the last record
    read (pass it as ``start`` to read on from there later) and
    ``last_sequence`` the newest sequence seen. Raises WalGapError if the
    log does not continue from ``after``, WalCorruptError (naming the segment
    and offset) for damage that is not a torn tail of the newest segment,
    after yielding the batches before it (a torn tail ends the reading and
    is left in ``torn``). ``segments`` reads those files instead of the
    directory's."""

    def __init__(self, directory: Path, after: int, *, start: WalPosition | None = None,
                 segments: list[Segment] | None = None) -> None:
        self.directory = Path(directory)
        self.after = after
        self.start = start
        self.position = start
        self.last_sequence = after
        self.torn: Damage | None = None
        self.records = 0
        self._segments = segments

    def _segments_to_read(self) -> list[Segment]:
        segments = self._segments if self._segments is not None else list_segments(self.directory)
        if self.start is not None:
            segments = [s for s in segments if s.first_sequence >= self.start.segment]
            if not segments or segments[0].first_sequence != self.start.segment:
                raise WalCorruptError(f"{self.directory}: segment {segment_name(self.start.segment)} is gone")
            return segments
        # The newest segment that starts at or before the first wanted
        # sequence: earlier ones hold nothing after ``after``.
        first = 0
        for i, segment in enumerate(segments):
            if segment.first_sequence <= self.after + 1:
                first = i
        return segments[first:]

    def __iter__(self) -> Iterator[Batch]:
        segments = self._segments_to_read()
        expected = self.after + 1
        for i, segment in enumerate(segments):
            newest = i == len(segments) - 1
            resume = self.start is not None and segment.first_sequence == self.start.segment
            with open(segment.path, "rb") as f:
                if resume:
                    assert self.start is not None
                    base = self.start.offset
                    f.seek(base)
                    data = f.read()
                    frames, damage = scan_segment(data, 0)
                else:
                    base = 0
                    data = f.read()
                    try:
                        check_header(data, segment)
                    except WalCorruptError:
                        if newest and torn_header(data, segment):
                            break  # created, then cut short before its header landed
                        raise
                    frames, damage = scan_segment(data)
            for end, payload in frames:
                where = f"{segment.path}:{base + end - len(payload) - FRAME_SIZE}"
                record = parse_record(payload, where)
                self.position = WalPosition(segment.first_sequence, base + end)
                self.records += 1
                n = len(record.events)
                first, last = record.first_sequence, record.first_sequence + n - 1
                if n == 0 or last < expected:
                    continue
                if first > expected:
                    raise WalGapError(
                        f"{where}: the log jumps to sequence {first} but {expected} comes next: events "
                        f"{expected}..{first - 1} are not in it (start from a snapshot at {first - 1} or later)")
                events = list(record.events)[expected - first:]
                self.last_sequence = last
                yield Batch(expected, record.server_time, events)
                expected = last + 1
            if damage is not None:
                damage = damage.rebased(base)
                if not newest or not damage.torn:
                    raise WalCorruptError(corruption_message(segment.path, damage, sealed=not newest))
                self.torn = damage


def decode_events(batch: Batch) -> list[Event]:
    """The batch's events as the server applied them: converted against the
    server's clock at the time, so clamped and missing times come out the
    same. Follows and interactions (the bulk of any log) take a short path:
    they were validated when accepted; the rest go through
    ``event_from_proto``. Raises WalCorruptError for an event this build
    rejects."""
    events = []
    now = batch.server_time
    for i, msg in enumerate(batch.events):
        which = msg.WhichOneof("kind")
        if which is None:
            events.append(redacted_event(msg, now))
            continue
        kind = EDGE_KINDS.get(which)
        if kind is not None or which == "interaction":
            body = getattr(msg, which)
            if msg.HasField("event_time"):
                stamp = msg.event_time
                when = min(stamp.seconds + stamp.nanos / 1e9, now)
            else:
                when = now
            if kind is not None:
                events.append(Event(msg.event_id, when, kind, body.actor_id, body.target_id))
            else:
                events.append(Event(msg.event_id, when, EventKind.INTERACTION, body.actor_id, body.target_id,
                                    body.type))
            continue
        try:
            # Accepted before event_time was required: a missing time is the record's.
            events.append(event_from_proto(msg, now, math.inf, require_time=False))
        except InvalidEvent as err:
            raise WalCorruptError(f"event {batch.first_sequence + i} of the log is invalid: {err}") from None
    return events


REDACTED_PREFIX = "redacted:"


def redact(msg: pb.GraphEvent) -> pb.GraphEvent:
    """The stand-in for ``msg`` in the log (see the module docstring)."""
    out = pb.GraphEvent(event_id=REDACTED_PREFIX + secrets.token_hex(12))
    if msg.HasField("event_time"):
        out.event_time.CopyFrom(msg.event_time)
    return out


def redacted_event(msg: pb.GraphEvent, server_time: float) -> Event:
    """What a redacted GraphEvent replays as: a no-op at its time, clamped
    to the record's clock like any event."""
    when = server_time
    if msg.HasField("event_time"):
        when = min(msg.event_time.seconds + msg.event_time.nanos / 1e9, server_time)
    return Event(msg.event_id, when, EventKind.ERASE_USER, 0)


def event_users(msg: pb.GraphEvent) -> tuple[int, ...]:
    """The user ids a GraphEvent names (none for a redacted one)."""
    which = msg.WhichOneof("kind")
    if which is None:
        return ()
    body = getattr(msg, which)
    if which == "profile" or which == "erase_user":
        return (body.user_id,)
    return (body.actor_id, body.target_id)


def read_wal_table(paths: Iterable[Path]) -> EventTable:
    """Every event of the given segment files or WAL directories, in
    sequence order, as an EventTable (for the rebuild). Single segment files
    are read whole; a directory is read as one log."""
    events: list[Event] = []
    for path in paths:
        path = Path(path)
        reader = _reader_for(path)
        for batch in reader:
            events.extend(decode_events(batch))
        if reader.torn is not None:
            log.warning("%s: stopped at a torn tail (%d bytes: %s)", path, reader.torn.bad_bytes,
                        reader.torn.reason)
    return EventTable.from_events(events)


def _reader_for(path: Path) -> WalReader:
    if path.is_dir():
        segments = list_segments(path)
        return WalReader(path, segments[0].first_sequence - 1 if segments else 0, segments=segments)
    match = _NAME.match(path.name)
    if not match:
        raise WalCorruptError(f"{path}: not a WAL segment name (<20 digits>{SUFFIX})")
    first = int(match.group(1))
    return WalReader(path.parent, first - 1, segments=[Segment(path, first)])
