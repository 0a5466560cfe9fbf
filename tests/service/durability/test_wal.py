"""The write-ahead log and the journal, in process over real files: round
trips, torn tails cut at every byte, CRC damage, rotation, group commit,
compaction, gaps, event ids remembered across restarts and snapshots, and
a rebuild fed overlapping logs and WAL segments."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import wal_record_pb2
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.errors import WalCorruptError, WalError, WalGapError
from graph.event_ids import EventIdSet
from graph.events import event_from_proto, event_to_proto
from graph.fold import fold
from graph.model import Event, EventKind, InteractionType
from graph.rebuild import read_inputs
from graph.snapshot import read_snapshot, write_snapshot
from graph.store import GraphStore
from graph.wal_format import (
    FRAME_SIZE,
    HEADER_SIZE,
    Batch,
    WalReader,
    decode_events,
    list_segments,
    read_wal_table,
)
from service.durability.journal import Journal
from service.durability.wal import WriteAheadLog
from service.durability.wal_compact import compact
from service.durability.wal_replay import replay
from service.server.config import WalConfig
from tests.support.durability import EVENT_TIME, build_snapshot, follow, log_paths, message

NOW = float(EVENT_TIME + 60)


def _record(first: int, events: list[ev_pb.GraphEvent]) -> wal_record_pb2.WalRecord:
    return wal_record_pb2.WalRecord(first_sequence=first, server_time=NOW, events=events)


def _messages(prefix: str, n: int, actor: int = 1) -> list[ev_pb.GraphEvent]:
    return [message(f"{prefix}-{i}", actor, 100 + i % 7) for i in range(n)]


def _write_log(directory: Path, batches: list[int], segment_bytes: int = 64 << 20) -> WriteAheadLog:
    """A log of consecutive records of the given sizes, from sequence 1."""
    wal = WriteAheadLog.open(WalConfig(directory, segment_bytes=segment_bytes))
    seq = 1
    for i, n in enumerate(batches):
        wal.sync(wal.append(_record(seq, _messages(f"b{i}", n))))
        seq += n
    return wal


def _read_all(directory: Path, after: int = 0) -> list[tuple[int, list[str]]]:
    return [(b.first_sequence, [e.event_id for e in b.events]) for b in WalReader(directory, after)]


class TestRoundTrip:
    def test_records_read_back_in_order_with_their_sequences(self, tmp_path: Path) -> None:
        """Appended records come back, after a close and reopen, with the
        same events and consecutive sequence numbers."""
        _write_log(tmp_path, [3, 1, 4]).close()
        assert _read_all(tmp_path) == [
            (1, ["b0-0", "b0-1", "b0-2"]), (4, ["b1-0"]), (5, ["b2-0", "b2-1", "b2-2", "b2-3"])]
        reopened = WriteAheadLog.open(WalConfig(tmp_path))
        assert reopened.next_sequence == 9
        reopened.close()

    def test_reading_after_a_watermark_skips_and_splits_records(self, tmp_path: Path) -> None:
        """Reading after sequence 5 starts inside the third record: only
        events 6.. come back, numbered from 6."""
        _write_log(tmp_path, [3, 1, 4]).close()
        assert _read_all(tmp_path, after=5) == [(6, ["b2-1", "b2-2", "b2-3"])]
        assert _read_all(tmp_path, after=8) == []

    def test_replay_rebuilds_the_same_times_as_live(self, tmp_path: Path) -> None:
        """An event without a time, or from the future within the skew,
        replays with the time the server gave it (its clock is logged)."""
        untimed = ev_pb.GraphEvent(event_id="u", interaction=ev_pb.Interaction(
            actor_id=1, target_id=2, type=ev_pb.INTERACTION_TYPE_MESSAGE))
        ahead = message("a", 1, 3)
        ahead.event_time.seconds = int(NOW) + 100
        wal = WriteAheadLog.open(WalConfig(tmp_path))
        wal.sync(wal.append(_record(1, [untimed, ahead])))
        wal.close()
        events = read_wal_table([tmp_path])
        assert events.time.tolist() == [NOW, NOW]
        # Logged by a server that took a missing time as its clock's now.
        assert [event_from_proto(m, NOW, require_time=False).time for m in (untimed, ahead)] == [NOW, NOW]

    def test_replay_converts_every_kind_exactly_as_the_server_did(self) -> None:
        """decode_events' short path for edges and interactions gives the
        same Event as event_from_proto at the logged clock, for timed,
        untimed and future events of every kind."""
        rng = np.random.default_rng(3)
        msgs = []
        kinds = ["follow", "unfollow", "block", "unblock", "mute", "unmute", "interaction", "report", "dismiss",
                 "erase_user"]
        for i in range(600):
            msg = ev_pb.GraphEvent(event_id=f"k-{i}")
            if i % 3:
                msg.event_time.seconds = int(NOW) + int(rng.integers(-10**6, 100))
                msg.event_time.nanos = int(rng.integers(0, 10**9))
            kind = kinds[i % len(kinds)]
            body = getattr(msg, kind)
            if kind == "erase_user":
                body.user_id = 7
            else:
                body.actor_id, body.target_id = 7, 8 + i % 5
            if kind == "interaction":
                body.type = 1 + i % 5
            msgs.append(msg)
        batch = Batch(1, NOW, msgs)
        assert decode_events(batch) == [event_from_proto(m, NOW, float("inf"), require_time=False) for m in msgs]

    def test_one_writer_at_a_time(self, tmp_path: Path) -> None:
        """A second writer on an open log is refused (two servers on one log
        would interleave sequences); once the first closes, it may open."""
        first = WriteAheadLog.open(WalConfig(tmp_path))
        with pytest.raises(WalError, match="in use by another process"):
            WriteAheadLog.open(WalConfig(tmp_path))
        first.close()
        WriteAheadLog.open(WalConfig(tmp_path)).close()

    def test_a_record_behind_the_log_is_refused(self, tmp_path: Path) -> None:
        """Appending a sequence the log already holds would give two events
        one number: refused."""
        wal = _write_log(tmp_path, [3])
        with pytest.raises(WalError, match="behind the log"):
            wal.append(_record(2, _messages("x", 1)))
        wal.close()


class TestTornTail:
    def test_every_cut_of_the_last_record_is_cut_off_and_logged(self, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
        """Whatever prefix of the last frame reached the disk, opening the
        log cuts exactly that prefix off, says how many bytes, and keeps
        the records before it; appending then continues the sequence."""
        src = tmp_path / "src"
        _write_log(src, [2, 2, 3]).close()
        (segment,) = list_segments(src)
        data = segment.path.read_bytes()
        second_end = _frame_ends(data)[1]
        last_len = len(data) - second_end
        for cut in range(1, last_len):
            work = tmp_path / f"cut{cut}"
            work.mkdir()
            (work / segment.path.name).write_bytes(data[: second_end + cut])
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="service.durability.wal"):
                wal = WriteAheadLog.open(WalConfig(work))
            assert any(f"cut {cut} bytes" in r.getMessage() for r in caplog.records), cut
            assert (work / segment.path.name).stat().st_size == second_end
            assert wal.next_sequence == 5
            wal.sync(wal.append(_record(5, _messages("again", 1))))
            wal.close()
            assert [first for first, _ in _read_all(work)] == [1, 3, 5]
            shutil.rmtree(work)

    def test_a_torn_segment_header_is_removed(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A segment cut short before its header landed holds nothing: it is
        removed and the log continues from the previous segment."""
        _write_log(tmp_path, [2], segment_bytes=4096).close()
        (tmp_path / "00000000000000000003.wal").write_bytes(b"CGW")
        with caplog.at_level(logging.WARNING, logger="service.durability.wal"):
            wal = WriteAheadLog.open(WalConfig(tmp_path))
        assert "cut 3 bytes" in caplog.text
        assert wal.next_sequence == 3
        assert len(list_segments(tmp_path)) == 1
        wal.close()

    def test_readers_stop_at_a_torn_tail_without_failing(self, tmp_path: Path) -> None:
        """A reader (replay, rebuild) that meets a torn tail before the
        writer cut it stops there and reports it."""
        _write_log(tmp_path, [2, 2]).close()
        (segment,) = list_segments(tmp_path)
        with open(segment.path, "ab") as f:
            f.write(b"\x10\x00\x00\x00garbage")
        reader = WalReader(tmp_path, 0)
        assert [b.first_sequence for b in reader] == [1, 3]
        assert reader.torn is not None and reader.torn.bad_bytes == 11


def _frame_ends(data: bytes) -> list[int]:
    ends, offset = [], HEADER_SIZE
    while offset < len(data):
        length = int.from_bytes(data[offset: offset + 4], "little")
        offset += FRAME_SIZE + length
        ends.append(offset)
    return ends


class TestCorruption:
    def test_a_flipped_bit_in_a_sealed_segment_is_an_error(self, tmp_path: Path) -> None:
        """A bad CRC in a segment that was sealed (fsynced whole before the
        next began) cannot be a torn write: reading raises."""
        _write_log(tmp_path, [50, 50, 50, 50], segment_bytes=4096).close()
        segments = list_segments(tmp_path)
        assert len(segments) >= 2
        path = segments[0].path
        data = bytearray(path.read_bytes())
        data[HEADER_SIZE + FRAME_SIZE + 20] ^= 0x04
        path.write_bytes(bytes(data))
        with pytest.raises(WalCorruptError, match="crc32 mismatch in a sealed segment"):
            list(WalReader(tmp_path, 0))

    def test_a_flipped_bit_mid_newest_segment_stops_the_start(self, tmp_path: Path) -> None:
        """Damage in the newest segment with intact records after it is not
        a torn write: opening the log refuses, naming the segment and
        offset, and leaves the file as it is (issue 20: it used to be cut
        there, losing the acknowledged records after it)."""
        _write_log(tmp_path, [2, 2, 2]).close()
        (segment,) = list_segments(tmp_path)
        data = bytearray(segment.path.read_bytes())
        first_end = _frame_ends(bytes(data))[0]
        data[first_end + FRAME_SIZE + 3] ^= 0x80
        segment.path.write_bytes(bytes(data))
        with pytest.raises(WalCorruptError, match=f"{segment.path}:{first_end}: crc32 mismatch; intact records"):
            WriteAheadLog.open(WalConfig(tmp_path))
        assert segment.path.read_bytes() == bytes(data)

    def test_a_damaged_length_field_is_detected(self, tmp_path: Path) -> None:
        """The CRC covers the length too: a length bit flipped into a
        plausible value is still caught, and the record after it shows it
        is corruption, not a torn tail."""
        _write_log(tmp_path, [2, 2]).close()
        (segment,) = list_segments(tmp_path)
        data = bytearray(segment.path.read_bytes())
        data[HEADER_SIZE] ^= 0x01
        segment.path.write_bytes(bytes(data))
        with pytest.raises(WalCorruptError, match=f":{HEADER_SIZE}: crc32 mismatch; intact records follow"):
            list(WalReader(tmp_path, 0))

    def test_a_bad_segment_header_is_an_error(self, tmp_path: Path) -> None:
        """A segment whose header is not ours is refused, not skipped."""
        _write_log(tmp_path, [2]).close()
        (segment,) = list_segments(tmp_path)
        data = bytearray(segment.path.read_bytes())
        data[0:5] = b"XXXXX"
        segment.path.write_bytes(bytes(data))
        with pytest.raises(WalCorruptError, match="bad magic"):
            WriteAheadLog.open(WalConfig(tmp_path))


class TestRotationAndCompaction:
    def test_segments_rotate_by_size_and_read_as_one_log(self, tmp_path: Path) -> None:
        """Past segment_bytes a new segment starts, named by its first
        sequence; together they read back as one gapless log."""
        wal = _write_log(tmp_path, [20] * 30, segment_bytes=4096)
        wal.close()
        segments = list_segments(tmp_path)
        assert len(segments) > 3
        assert all(s.path.stat().st_size <= 4096 + 2048 for s in segments)
        batches = _read_all(tmp_path)
        assert [first for first, _ in batches] == list(range(1, 601, 20))
        assert [s.first_sequence for s in segments] == sorted(s.first_sequence for s in segments)
        assert {s.first_sequence for s in segments} <= {first for first, _ in batches}

    def test_compaction_keeps_everything_after_the_watermark(self, tmp_path: Path) -> None:
        """`wal compact` removes only segments wholly at or below the
        snapshot's watermark, never the newest, and the rest still reads
        from there."""
        _write_log(tmp_path, [20] * 30, segment_bytes=4096).close()
        segments = list_segments(tmp_path)
        watermark = segments[2].first_sequence + 5
        removed = compact(tmp_path, watermark)
        assert removed == [s.path for s in segments[:2]]
        assert _read_all(tmp_path, watermark)[0][0] == watermark + 1
        with pytest.raises(WalGapError, match="not in it"):
            list(WalReader(tmp_path, 0))
        assert len(compact(tmp_path, 10**9)) == len(segments) - 3
        assert len(list_segments(tmp_path)) == 1

    def test_a_record_after_a_gap_opens_a_new_segment(self, tmp_path: Path) -> None:
        """When a newer snapshot was loaded than the log reached, the next
        record starts a new segment at its own sequence; reading from
        before the gap fails, reading from after it works."""
        wal = _write_log(tmp_path, [5])
        wal.sync(wal.append(_record(100, _messages("late", 2))))
        wal.close()
        assert [s.first_sequence for s in list_segments(tmp_path)] == [1, 100]
        with pytest.raises(WalGapError, match=r"6\.\.99"):
            list(WalReader(tmp_path, 3))
        assert _read_all(tmp_path, 99) == [(100, ["late-0", "late-1"])]


class TestGroupCommit:
    def test_concurrent_commits_share_fsyncs(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Eight threads committing at once need far fewer fsyncs than
        commits: whoever finds an fsync running waits for the next one
        instead of starting its own."""
        real = os.fdatasync

        def slow_fdatasync(fd: int) -> None:
            time.sleep(0.005)
            real(fd)

        monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
        store = GraphStore.empty(GraphConfig(), ManualClock(NOW))
        journal = Journal(store, WriteAheadLog.open(WalConfig(tmp_path)))
        per_thread = 25

        def client(k: int) -> None:
            for i in range(per_thread):
                e = Event(f"t{k}-{i}", NOW, EventKind.INTERACTION, 1 + k, 50, int(InteractionType.MESSAGE))
                journal.commit([e], now=NOW)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert journal.wal is not None
        fsyncs = journal.wal.fsyncs
        journal.wal.close()
        assert store.watermark == 8 * per_thread
        assert fsyncs <= 8 * per_thread // 3
        assert sum(len(b.events) for b in WalReader(tmp_path, 0)) == 8 * per_thread

    def test_a_write_error_refuses_every_later_write(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """After a failed write the log may be torn mid-segment: nothing
        more is accepted (and nothing of the failed batch was applied)."""
        store = GraphStore.empty(GraphConfig(), ManualClock(NOW))
        journal = Journal(store, WriteAheadLog.open(WalConfig(tmp_path)))
        e = Event("ok", NOW, EventKind.FOLLOW, 1, 2)
        journal.commit([e], now=NOW)

        def full_disk(fd: int, data: object) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", full_disk)
        with pytest.raises(WalError, match="No space left"):
            journal.commit([Event("lost", NOW, EventKind.FOLLOW, 1, 3)], now=NOW)
        monkeypatch.undo()
        with pytest.raises(WalError, match="unusable"):
            journal.commit([Event("later", NOW, EventKind.FOLLOW, 1, 4)], now=NOW)
        assert store.watermark == 1 and "lost" not in store.seen_ids


class TestJournal:
    def test_sequences_match_the_store_watermark_and_duplicates_get_none(self, tmp_path: Path) -> None:
        """Each applied event gets the next sequence number; duplicates (seen
        before or twice in one batch) get none and are not logged."""
        store = GraphStore.empty(GraphConfig(), ManualClock(NOW))
        journal = Journal(store, WriteAheadLog.open(WalConfig(tmp_path)))
        a = Event("a", NOW, EventKind.FOLLOW, 1, 2)
        b = Event("b", NOW, EventKind.FOLLOW, 2, 1)
        first = journal.commit([a, b, a], now=NOW)
        assert (first.applied, first.duplicates, first.watermark) == (2, 1, 2)
        again = journal.commit([b, Event("c", NOW, EventKind.FOLLOW, 1, 3)], now=NOW)
        assert (again.applied, again.duplicates, again.watermark) == (1, 1, 3)
        assert [e.event_id for e in again.events] == ["c"]
        assert _read_all(tmp_path) == [(1, ["a", "b"]), (3, ["c"])]

    def test_ids_are_remembered_across_restart_and_snapshot(self, tmp_path: Path) -> None:
        """A batch retried after a restart is a duplicate whether its events
        are in the replayed log or in a snapshot written since."""
        snap_dir = tmp_path / "snap"
        build_snapshot(snap_dir, n_users=60)
        config = GraphConfig()
        wal_dir = tmp_path / "wal"
        snapshot = read_snapshot(snap_dir, config, ManualClock(NOW))
        base = snapshot.store.watermark
        assert "syn-1" in snapshot.store.seen_ids
        journal = Journal(snapshot.store, WriteAheadLog.open(WalConfig(wal_dir)))
        batch = [event_from_proto(m, NOW) for m in (follow("r-1", 1, 2), message("r-2", 1, 2))]
        assert journal.commit(batch, now=NOW).applied == 2
        assert journal.wal is not None
        journal.wal.close()

        restarted = read_snapshot(snap_dir, config, ManualClock(NOW))
        WriteAheadLog.open(WalConfig(wal_dir)).close()
        assert replay(wal_dir, restarted.store).events == 2
        retry = Journal(restarted.store).commit(batch, now=NOW)
        assert (retry.applied, retry.duplicates, retry.watermark) == (0, 2, base + 2)

        write_snapshot(restarted.store, np.asarray(snapshot.vectors), snapshot.index, tmp_path / "snap2")
        reloaded = read_snapshot(tmp_path / "snap2", config, ManualClock(NOW))
        assert reloaded.store.watermark == base + 2
        assert Journal(reloaded.store).commit(batch, now=NOW).duplicates == 2
        assert replay(wal_dir, reloaded.store).events == 0

    def test_event_id_set_layers(self) -> None:
        """Ids in the snapshot's sorted array and ids added since are both
        found; to_array merges them sorted and unique."""
        ids = EventIdSet.from_ids(["b", "a", "", "a", "ünï"])
        ids |= {"c", "a-much-longer-id-than-the-base-width"}
        assert all(i in ids for i in ("a", "b", "c", "ünï", "a-much-longer-id-than-the-base-width"))
        assert "d" not in ids and "" not in ids and len(ids) == 5
        assert [x.decode() for x in ids.to_array().tolist()] == sorted(
            ["a", "a-much-longer-id-than-the-base-width", "b", "c", "ünï"])

    def test_batch_lookup_agrees_with_single_lookups(self) -> None:
        """seen_among answers like ``in`` for each id: base and added ids,
        non-ASCII, empty, and ids longer than the base's width whose prefix
        is in the base."""
        ids = EventIdSet.from_ids(["b", "a", "ünï", "abc"])
        ids |= {"c"}
        probe = ["a", "", "c", "ünï", "abcdef", "ab", "zz", "b", "a"]
        assert ids.seen_among(probe) == [p in ids for p in probe]
        assert ids.seen_among(probe) == [True, False, True, True, False, False, False, True, True]
        assert EventIdSet().seen_among(["a", ""]) == [False, False]


class TestRebuildFromWal:
    def test_logs_plus_wal_rebuild_to_the_live_state(self, tmp_path: Path) -> None:
        """The snapshot's own logs plus the WAL, with the event log and the
        WAL given twice (overlapping sources), rebuild to the live state:
        same watermark, same edges, same strengths; each event applied
        once."""
        snap_dir = tmp_path / "snap"
        build_snapshot(snap_dir, n_users=80)
        wal_dir = tmp_path / "wal"
        live = read_snapshot(snap_dir, GraphConfig(), ManualClock(NOW)).store
        journal = Journal(live, WriteAheadLog.open(WalConfig(wal_dir, segment_bytes=4096)))
        profiles, events = log_paths(snap_dir)
        # A retry of an event the logs already hold (same id, same content):
        # a duplicate.
        inputs = read_inputs([events], now=NOW, max_future_s=GraphConfig().max_future_s)
        first = next(e for e in inputs.events() if e.event_id == "syn-1")
        retry = event_to_proto(first)
        rng = np.random.default_rng(5)
        for i in range(40):
            msgs = []
            for j in range(10):
                a, b = (int(x) for x in rng.choice(np.arange(1, 81), 2, replace=False))
                msgs.append(follow(f"w-{i}-{j}", a, b) if j % 3 == 0 else message(f"w-{i}-{j}", a, b))
            msgs.append(retry)
            journal.commit([event_from_proto(m, NOW) for m in msgs], messages=msgs, now=NOW)
        assert journal.wal is not None
        journal.wal.close()
        segments = list_segments(wal_dir)
        assert len(segments) > 1

        # What `contactgraph rebuild` reads and folds (the ranker it also
        # trains plays no part in the graph).
        table = read_inputs([profiles, events, segments[1].path, events, wal_dir, wal_dir], now=NOW,
                            max_future_s=GraphConfig().max_future_s)
        store = fold(table, GraphConfig(), ManualClock(NOW))
        assert store.watermark == live.watermark
        assert len(store.seen_ids) == len(live.seen_ids)
        for name in ("follows", "friends", "blocks"):
            assert _edges(store, name) == _edges(live, name), name
        live_pairs, rebuilt_pairs = _strengths(live), _strengths(store)
        assert live_pairs.keys() == rebuilt_pairs.keys()
        assert max(abs(live_pairs[k] - rebuilt_pairs[k]) for k in live_pairs) < 1e-3


def _edges(store: GraphStore, name: str) -> set[tuple[int, int]]:
    relation = getattr(store, name)
    out = set()
    for row in range(store.n_rows):
        for b in relation.out(row).tolist():
            out.add((store.ids.ext_of(row), store.ids.ext_of(b)))
    return out


def _strengths(store: GraphStore) -> dict[tuple[int, int], float]:
    out = {}
    for row in range(store.n_rows):
        rows, strength, _ = store.interaction_partners(row, NOW)
        for b, s in zip(rows.tolist(), strength.tolist(), strict=True):
            out[(store.ids.ext_of(row), store.ids.ext_of(b))] = s
    return out
