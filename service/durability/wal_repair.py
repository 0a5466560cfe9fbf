"""The operator's repair of a damaged write-ahead log (``contactgraph wal
repair``): every intact record kept, each lost stretch replaced by no-op
stand-ins so that sequence numbers still hold, the original bytes set
aside."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import wal_record_pb2
from graph.durable import fsync_dir
from graph.errors import WalCorruptError
from graph.wal_format import (
    HEADER_SIZE,
    Segment,
    check_header,
    encode_frame,
    encode_header,
    list_segments,
    parse_record,
    scan_segment,
    torn_header,
    whole_frame,
)
from service.durability.wal import TMP_SUFFIX, lock_log, set_aside, write_all

log = logging.getLogger(__name__)


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
    lock_fd = lock_log(directory)
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
    tmp = directory / f"{segment.path.name.removesuffix('.wal')}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, encode_header(segment.first_sequence)
                   + b"".join(encode_frame(r.SerializeToString()) for r in records))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, segment.path)
    fsync_dir(directory)
