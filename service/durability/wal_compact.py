"""Compacting the write-ahead log against a snapshot: segments wholly at
or below its watermark go, and segments naming a user in its erasure
ledger are rewritten with those events redacted (``contactgraph wal
compact``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from contactgraph.v1 import wal_record_pb2
from graph.durable import fsync_dir
from graph.erasure import ErasureLedger
from graph.errors import WalCorruptError, WalError
from graph.wal_format import (
    Segment,
    check_header,
    corruption_message,
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
from service.durability.wal import TMP_SUFFIX, lock_log, write_all

log = logging.getLogger(__name__)


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
            for stale in directory.glob(f"*{TMP_SUFFIX}"):
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


def _try_lock(directory: Path) -> int | None:
    """The log's LOCK, or None while a server holds it."""
    try:
        return lock_log(directory)
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
    tmp = directory / f"{target.name.removesuffix('.wal')}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, encode_header(first) + b"".join(frames))
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

