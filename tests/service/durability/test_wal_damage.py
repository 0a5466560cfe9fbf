"""Damage to a write-ahead log over real files: a torn tail (a last write
cut short) is the only damage cut off by itself; everything else stops the
start, naming the segment and offset, and leaves the bytes alone until an
operator runs the repair, which keeps every intact record and says what
was lost."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import wal_record_pb2
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.errors import WalCorruptError, WalError
from graph.store import GraphStore
from graph.wal_format import FRAME_SIZE, HEADER_SIZE, list_segments, read_wal_table
from service.durability.wal import WriteAheadLog
from service.durability.wal_repair import repair_log
from service.durability.wal_replay import replay
from service.server.config import WalConfig
from tests.support.durability import EVENT_TIME, message

NOW = float(EVENT_TIME + 60)


def _record(first: int, events: list[ev_pb.GraphEvent]) -> wal_record_pb2.WalRecord:
    return wal_record_pb2.WalRecord(first_sequence=first, server_time=NOW, events=events)


def _write_log(directory: Path, batches: list[int], segment_bytes: int = 64 << 20) -> list[list[str]]:
    """A log of records of the given sizes from sequence 1, each synced (so
    acknowledged); returns each record's event ids."""
    wal = WriteAheadLog.open(WalConfig(directory, segment_bytes=segment_bytes))
    seq, ids = 1, []
    for k, n in enumerate(batches):
        events = [message(f"b{k}-{i}", 1 + k % 5, 100 + i % 7) for i in range(n)]
        wal.sync(wal.append(_record(seq, events)))
        ids.append([e.event_id for e in events])
        seq += n
    wal.close()
    return ids


def _frames(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each frame of an undamaged segment."""
    out, offset = [], HEADER_SIZE
    while offset < len(data):
        end = offset + FRAME_SIZE + int.from_bytes(data[offset: offset + 4], "little")
        out.append((offset, end))
        offset = end
    return out


def _flip(path: Path, offset: int, mask: int = 0x5A) -> bytes:
    """XOR one byte; returns the damaged bytes."""
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))
    return bytes(data)


def _start(directory: Path) -> GraphStore:
    """What a server start does with the log: open it, replay it."""
    WriteAheadLog.open(WalConfig(directory)).close()
    store = GraphStore.empty(GraphConfig(), ManualClock(NOW))
    replay(directory, store)
    return store


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != "LOCK"}


class TestTornTail:
    def test_a_cut_last_frame_is_cut_and_its_bytes_kept_aside(self, tmp_path: Path) -> None:
        """A frame cut short by a crash (its length runs past the end, nothing
        good after it) is cut off at start, and the cut bytes are copied to a
        ``.torn-`` file beside the segment first."""
        _write_log(tmp_path, [2, 2, 2])
        (segment,) = list_segments(tmp_path)
        data = segment.path.read_bytes()
        start, _ = _frames(data)[2]
        segment.path.write_bytes(data[: start + 11])
        store = _start(tmp_path)
        assert store.watermark == 4
        assert segment.path.stat().st_size == start
        (aside,) = tmp_path.glob("*.torn-*")
        assert aside.read_bytes() == data[start: start + 11]

    def test_a_zero_filled_tail_is_torn(self, tmp_path: Path) -> None:
        """Zeros after the last record (space the file system gave the file
        before a crash) are a torn tail: no record is ever zeros."""
        _write_log(tmp_path, [2, 2])
        (segment,) = list_segments(tmp_path)
        with open(segment.path, "ab") as f:
            f.write(bytes(300))
        assert _start(tmp_path).watermark == 4


class TestCorruptionStopsTheStart:
    def test_a_flipped_byte_mid_newest_segment_refuses_and_keeps_the_bytes(self, tmp_path: Path) -> None:
        """A bad CRC with intact records after it, in the newest segment:
        opening raises WalCorruptError naming the file and the damaged
        frame's offset, and truncates nothing."""
        _write_log(tmp_path, [2, 2, 2, 2])
        (segment,) = list_segments(tmp_path)
        start, _ = _frames(segment.path.read_bytes())[1]
        damaged = _flip(segment.path, start + FRAME_SIZE + 3)
        with pytest.raises(WalCorruptError, match=f"{segment.path}:{start}: crc32 mismatch; intact records "
                                                  "follow.*wal repair"):
            WriteAheadLog.open(WalConfig(tmp_path))
        assert segment.path.read_bytes() == damaged
        assert not list(tmp_path.glob("*.torn-*"))

    @pytest.mark.parametrize("where", ["payload", "crc"])
    def test_a_damaged_last_record_is_not_a_torn_tail(self, tmp_path: Path, where: str) -> None:
        """The last record written whole, then a byte of it changed: it fits
        in the file, so it is not a cut write; refused, not cut."""
        _write_log(tmp_path, [2, 2])
        (segment,) = list_segments(tmp_path)
        start, end = _frames(segment.path.read_bytes())[-1]
        damaged = _flip(segment.path, end - 1 if where == "payload" else start + 5)
        with pytest.raises(WalCorruptError, match=f":{start}: crc32 mismatch; a whole record"):
            WriteAheadLog.open(WalConfig(tmp_path))
        assert segment.path.read_bytes() == damaged

    def test_a_last_length_field_flipped_past_the_end_is_not_a_torn_tail(self, tmp_path: Path) -> None:
        """The last frame's length damaged so it seems to run past the end,
        as a cut write would: the bytes still check out as a whole frame
        under the right length, so it is refused, not cut."""
        _write_log(tmp_path, [2, 2])
        (segment,) = list_segments(tmp_path)
        start, _ = _frames(segment.path.read_bytes())[-1]
        _flip(segment.path, start + 1, 0x10)
        with pytest.raises(WalCorruptError, match=f":{start}: frame of .* runs .* past the end; a whole record"):
            WriteAheadLog.open(WalConfig(tmp_path))

    def test_a_length_field_flipped_past_the_end_with_records_after_is_refused(self, tmp_path: Path) -> None:
        """A middle frame's length damaged to run past the end: the records
        after it are still found, so it is corruption."""
        _write_log(tmp_path, [2, 2, 2])
        (segment,) = list_segments(tmp_path)
        start, _ = _frames(segment.path.read_bytes())[0]
        _flip(segment.path, start + 2, 0x01)
        with pytest.raises(WalCorruptError, match=f":{start}: .*intact records follow"):
            WriteAheadLog.open(WalConfig(tmp_path))

    def test_corruption_in_a_sealed_segment_stops_the_replay(self, tmp_path: Path) -> None:
        """Damage anywhere in a sealed segment, even its very last record,
        stops the replay with the segment and offset named."""
        _write_log(tmp_path, [20] * 16, segment_bytes=4096)
        segments = list_segments(tmp_path)
        assert len(segments) >= 3
        start, end = _frames(segments[0].path.read_bytes())[-1]
        _flip(segments[0].path, end - 2)
        with pytest.raises(WalCorruptError, match=f"{segments[0].path}:{start}: crc32 mismatch in a sealed"):
            _start(tmp_path)

    def test_a_sealed_segment_is_never_cut_when_the_newest_is_dropped(self, tmp_path: Path) -> None:
        """The newest segment holds no record (a crash right after it was
        created): it goes, and the segment before it, which was sealed, is
        checked as sealed: a cut-looking last frame there is refused."""
        _write_log(tmp_path, [20] * 4, segment_bytes=4096)
        (segment,) = list_segments(tmp_path)
        data = segment.path.read_bytes()
        segment.path.write_bytes(data[:-5])
        (tmp_path / "00000000000000000081.wal").write_bytes(b"")
        with pytest.raises(WalCorruptError, match="in a sealed segment"):
            WriteAheadLog.open(WalConfig(tmp_path))
        assert segment.path.read_bytes() == data[:-5]

    def test_the_rebuild_refuses_mid_segment_corruption(self, tmp_path: Path) -> None:
        """The rebuild reads segments through the same reader: a flipped byte
        with records after it stops it, for a directory or a single file."""
        _write_log(tmp_path, [2, 2, 2])
        (segment,) = list_segments(tmp_path)
        start, _ = _frames(segment.path.read_bytes())[1]
        _flip(segment.path, start + FRAME_SIZE + 1)
        for path in (tmp_path, segment.path):
            with pytest.raises(WalCorruptError, match=f":{start}: crc32 mismatch; intact records follow"):
                read_wal_table([path])


class TestRepair:
    def test_repair_keeps_every_intact_record_and_reports_the_loss(self, tmp_path: Path) -> None:
        """After a refused start, the repair copies the segment aside as it
        was, keeps the records before and after the bad one, puts no-op
        stand-ins in place of the lost events (so the numbering holds), and
        the log then opens and replays every other event."""
        ids = _write_log(tmp_path, [2, 3, 4, 2])
        (segment,) = list_segments(tmp_path)
        start, end = _frames(segment.path.read_bytes())[1]
        damaged = _flip(segment.path, start + FRAME_SIZE + 5)
        done = repair_log(tmp_path)
        ((path, aside),) = done.rewritten
        assert path == segment.path and aside.read_bytes() == damaged
        assert done.kept == 3 and done.lost_events == 3
        report = "\n".join(done.lines())
        assert f"bytes {start}..{end}" in report and "events 3..5 lost (3)" in report
        store = _start(tmp_path)
        assert store.watermark == 11
        kept = [i for k, rec in enumerate(ids) if k != 1 for i in rec]
        assert all(i in store.seen_ids for i in kept)
        assert not any(i in store.seen_ids for i in ids[1])
        assert repair_log(tmp_path).lines() == ["no damage found: nothing changed"]

    def test_a_damaged_length_field_loses_nothing(self, tmp_path: Path) -> None:
        """A record whose only damage is its length field is kept whole: the
        CRC holds under the length the next record's position gives."""
        ids = _write_log(tmp_path, [2, 2, 2])
        (segment,) = list_segments(tmp_path)
        start, _ = _frames(segment.path.read_bytes())[1]
        _flip(segment.path, start, 0x03)
        done = repair_log(tmp_path)
        assert (done.mended, done.lost_events, done.losses) == (1, 0, [])
        store = _start(tmp_path)
        assert all(i in store.seen_ids for rec in ids for i in rec)

    def test_a_lost_tail_of_a_sealed_segment_is_numbered_up_to_the_next(self, tmp_path: Path) -> None:
        """The last record of a sealed segment lost: the next segment's name
        says which sequences it held; stand-ins take them, and the log replays
        across the segments again."""
        _write_log(tmp_path, [20] * 16, segment_bytes=4096)
        segments = list_segments(tmp_path)
        _, end = _frames(segments[0].path.read_bytes())[-1]
        _flip(segments[0].path, end - 2)
        done = repair_log(tmp_path)
        first_next = segments[1].first_sequence
        assert done.lost_events == 20
        assert f"events {first_next - 20}..{first_next - 1} lost" in "\n".join(done.lines())
        assert _start(tmp_path).watermark == 320

    def test_a_damaged_header_is_rebuilt_from_the_name(self, tmp_path: Path) -> None:
        """A flipped byte in a segment header: refused at start; the repair
        writes the header the file name gives and loses no record."""
        _write_log(tmp_path, [2, 2])
        (segment,) = list_segments(tmp_path)
        _flip(segment.path, 3)
        with pytest.raises(WalCorruptError, match=f"{segment.path}:0: .*bad magic"):
            _start(tmp_path)
        assert repair_log(tmp_path).lost_events == 0
        assert _start(tmp_path).watermark == 4

    def test_repair_refuses_while_a_server_holds_the_log(self, tmp_path: Path) -> None:
        """Rewriting a segment a server appends to would lose its writes."""
        _write_log(tmp_path, [2])
        wal = WriteAheadLog.open(WalConfig(tmp_path))
        with pytest.raises(WalError, match="in use"):
            repair_log(tmp_path)
        wal.close()


def test_a_flipped_byte_anywhere_never_loses_acknowledged_events_silently(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real log (small segments) with one byte XORed at each of many
    offsets, every segment, header, length, CRC and payload alike: either
    the start replays every acknowledged event, or it refuses with
    WalCorruptError naming the segment and the files are byte for byte
    unchanged. After a refusal, the repair lets it start with the events
    of at most the one damaged record missing, and the numbering kept
    (but for the log's very last record, whose size nothing after it
    tells)."""
    src = tmp_path / "src"
    ids = _write_log(src, [1 + k % 4 for k in range(150)], segment_bytes=4096)
    all_ids = [i for rec in ids for i in rec]
    segments = list_segments(src)
    assert len(segments) >= 3
    rng = random.Random(20)
    original = _files(src)
    last_frame = _frames(original[segments[-1].path.name])[-1]
    trials = refused = 0
    # The log was written with fsyncs; the trials only read and rewrite
    # copies, where fsync would take most of the time.
    monkeypatch.setattr("os.fsync", lambda fd: None)
    monkeypatch.setattr("os.fdatasync", lambda fd: None)
    for segment in segments:
        size = len(original[segment.path.name])
        # Every byte of the segment header, of the length and CRC fields of
        # its first two frames and its last, and of the log's last frame (where damage looks most like
        # a torn write); a stride through the payloads.
        frames = _frames(original[segment.path.name])
        offsets = {*range(HEADER_SIZE), *range(rng.randrange(37), size, 37),
                   *(o for start, _ in frames[:2] + frames[-1:] for o in range(start, start + FRAME_SIZE))}
        if segment == segments[-1]:
            offsets |= set(range(*last_frame))
        for offset in sorted(offsets):
            work = tmp_path / f"work{trials}"
            work.mkdir()
            for name, data in original.items():
                (work / name).write_bytes(data)
            path = work / segment.path.name
            _flip(path, offset, rng.randrange(1, 256))
            before = _files(work)
            trials += 1
            try:
                store = _start(work)
            except WalCorruptError as err:
                refused += 1
                assert f"{path}:" in str(err), (segment.path.name, offset, err)
                assert _files(work) == before, (segment.path.name, offset)
            else:
                missing = [i for i in all_ids if i not in store.seen_ids]
                raise AssertionError(f"{segment.path.name}@{offset}: started; missing {missing[:5]}")
            repair_log(work)
            store = _start(work)
            missing = {i for i in all_ids if i not in store.seen_ids}
            if segment == segments[-1] and last_frame[0] <= offset < last_frame[1]:
                assert store.watermark in (len(all_ids), len(all_ids) - len(ids[-1])), offset
                assert missing <= set(ids[-1]), (offset, sorted(missing))
            else:
                assert store.watermark == len(all_ids), (segment.path.name, offset)
                assert any(missing <= set(rec) for rec in ids), (segment.path.name, offset, sorted(missing))
    assert trials == refused > 400, trials
