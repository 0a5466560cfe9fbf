"""Erasure that really erases (issue 6): the ledger of keyed hashes, the
store, fold and snapshot checking membership by hash, the journal logging
events about erased users redacted, `wal compact` rewriting the log (crash
safe), the guardian journal scrubbed, older snapshots removed, and end to
end: after erasure, a rebuild and a compaction no file in the data
directory, decoded, holds the id, and old raw logs plus the ledger do not
bring the user back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import grpc
import numpy as np
import pytest
from google.protobuf import json_format, timestamp_pb2

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import graph_service_pb2, graph_service_pb2_grpc, guardian_service_pb2_grpc, wal_record_pb2
from contactgraph.v1 import guardian_service_pb2 as gpb
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.erasure import KEY_FILE, ErasureKeyError, ErasureLedger, read_key, write_ledger_file
from graph.errors import SnapshotError, WalError
from graph.eventlog import write_edge_csv, write_profile_csv
from graph.events import event_from_proto
from graph.fold import fold
from graph.model import AccountState, AgeBand, Event, EventKind, MessagePrivacy, Profile
from graph.rebuild import build, read_inputs, rebuild
from graph.snapshot import LEDGER, load_ledger, read_snapshot, snapshots_naming, write_snapshot
from graph.store import GraphStore
from graph.table import EventTable
from graph.wal_format import Segment, WalReader, event_users, list_segments, read_wal_table
from service.cli import main as cli
from service.durability.journal import Journal
from service.durability.wal import WriteAheadLog
from service.durability.wal_compact import compact_log
from service.durability.wal_replay import replay
from service.safety.guardian import (
    ERASED_GUARDIAN_PREFIX,
    GuardianRegistry,
    Messaging,
    issue_consent_token,
    scrub_journal,
)
from service.server.config import ServerConfig, WalConfig
from service.server.server import build_safety, create_server
from service.server.state import ServingState, open_serving

K = EventKind
# Large enough that no row number, count or time can equal it by chance.
X = 7_340_123_456_789
T0 = 1_700_000_000.0
KEY = b"erasure-test-guardian-key-000001"


def ev(kind: EventKind, actor: int, target: int = 0, *, t: float = T0, event_id: str = "",
       profile: Profile | None = None, detail: int = 0) -> Event:
    return Event(event_id, t, kind, actor, target, detail, profile)


def _follow(eid: str, a: int, b: int) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=eid, event_time=timestamp_pb2.Timestamp(seconds=int(T0)),
                            follow=ev_pb.Edge(actor_id=a, target_id=b))


def _message(eid: str, a: int, b: int) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=eid, event_time=timestamp_pb2.Timestamp(seconds=int(T0)),
                            interaction=ev_pb.Interaction(actor_id=a, target_id=b,
                                                          type=ev_pb.INTERACTION_TYPE_MESSAGE))


def _erase(eid: str, user: int) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=eid, event_time=timestamp_pb2.Timestamp(seconds=int(T0)),
                            erase_user=ev_pb.EraseUser(user_id=user))


def _follows(store: GraphStore) -> set[tuple[int, int]]:
    out = set()
    for row in range(store.n_rows):
        for b in store.follows.out(row).tolist():
            out.add((store.ids.ext_of(row), store.ids.ext_of(b)))
    return out


# --- the ledger -----------------------------------------------------------------------------------------------


class TestLedger:
    def test_membership_by_keyed_hash_and_no_id_on_disk(self, tmp_path: Path) -> None:
        """A ledger written and read back answers membership for the erased
        ids and no others; the file holds hex digests, not the ids, and
        without the key it cannot be read at all."""
        ledger = ErasureLedger()
        ledger.add(X)
        ledger.add(12)
        assert X in ledger and 12 in ledger and 13 not in ledger
        write_ledger_file(ledger, tmp_path / "erased.ledger")
        text = (tmp_path / "erased.ledger").read_text()
        assert str(X) not in text and '"12"' not in text
        again = load_ledger(tmp_path / "erased.ledger")
        assert again.known == frozenset()  # nothing in the clear
        assert X in again and 12 in again and 13 not in again and len(again) == 2
        probe = np.array([5, X, 12, 13, X], np.int64)
        assert again.erased_among(probe).tolist() == [False, True, True, False, True]
        assert again.subset([1, X, 2]) == {X}
        os.unlink(tmp_path / KEY_FILE)
        with pytest.raises(SnapshotError, match="needs its key"):
            load_ledger(tmp_path / "erased.ledger")

    def test_hashes_cannot_be_rekeyed(self) -> None:
        """A ledger holding hashes under one key refuses another key (it
        would silently forget everyone); one holding only ids erased in this
        process takes any key."""
        fresh = ErasureLedger()
        fresh.add(X)
        fresh.bind(b"k" * 32)
        assert X in fresh
        with pytest.raises(ErasureKeyError, match="copy that data directory"):
            fresh.bind(b"j" * 32)
        only_known = ErasureLedger(b"k" * 32)
        only_known.bind(b"j" * 32)
        only_known.add(X)
        assert X in only_known


# --- the store, the fold and the snapshot ---------------------------------------------------------------------


def _world() -> list[Event]:
    """Users 1..6 and X: X follows and is followed, messages and is
    messaged, blocks and is reported, has a profile; the others are
    friends among themselves."""
    adult = dict(age_band=AgeBand.ADULT, message_privacy=MessagePrivacy.EVERYONE, account_state=AccountState.ACTIVE)
    out = [ev(K.PROFILE, u, profile=Profile(u, **adult), event_id=f"p-{u}") for u in (1, 2, 3, 4, 5, 6, X)]
    for a, b in ((1, 2), (2, 3), (3, 4), (4, 5), (5, 6)):
        out += [ev(K.FOLLOW, a, b, event_id=f"f-{a}-{b}"), ev(K.FOLLOW, b, a, event_id=f"f-{b}-{a}")]
    out += [ev(K.FOLLOW, X, 1, event_id=f"f-{X}-1"), ev(K.FOLLOW, 1, X, event_id=f"f-1-{X}"),
            ev(K.INTERACTION, X, 2, detail=1, event_id=f"m-{X}-2"), ev(K.INTERACTION, 3, X, detail=1,
                                                                          event_id=f"m-3-{X}"),
            ev(K.BLOCK, X, 4, event_id=f"b-{X}-4"), ev(K.REPORT, 5, X, detail=1, event_id=f"r-5-{X}")]
    return out


def _assert_no_x_arrays(directory: Path) -> None:
    for path in directory.glob("*.npy"):
        values = np.load(path, allow_pickle=False)
        if values.dtype.kind in "iu":
            assert X not in values, path.name
        elif values.dtype.kind == "S":
            assert not any(str(X).encode() in v for v in values.ravel().tolist()), path.name
        assert str(X).encode() not in path.read_bytes() and struct.pack("<q", X) not in path.read_bytes(), path.name


class TestStoreAndSnapshot:
    def test_a_live_erasure_written_to_a_snapshot_keeps_the_user_out_without_their_id(self, tmp_path: Path) -> None:
        """Erase X live, write a snapshot: no array holds X (the id map
        blanks the row, the ledger is hashes, the key sits in the data
        directory); loaded back, X has no row, events naming X change
        nothing and X never gets a new row."""
        store = GraphStore.empty(clock=ManualClock(T0))
        store.apply_batch(_world())
        row = store.row(X)
        store.apply(ev(K.ERASE_USER, X, event_id="erase"))
        assert store.row(X) == -1 and store.is_erased(X) and row in store.erased_rows
        vectors = np.zeros((store.n_rows, 4), np.float32)
        manifest = write_snapshot(store, vectors, faiss.IndexFlatIP(4), tmp_path / "snap")
        assert manifest["format_version"] == 3 and manifest["counts"]["erased"] == 1
        assert read_key(tmp_path) is not None and "erasure" in manifest
        _assert_no_x_arrays(tmp_path / "snap")
        assert np.load(tmp_path / "snap" / f"{LEDGER}.npy").shape == (1,)
        loaded = read_snapshot(tmp_path / "snap", GraphConfig(), ManualClock(T0)).store
        assert loaded.row(X) == -1 and loaded.is_erased(X) and not loaded.is_erased(1)
        assert row in loaded.erased_rows and loaded.erased == frozenset()
        before = _follows(loaded)
        loaded.apply_batch([ev(K.FOLLOW, X, 2, event_id="late-1"), ev(K.FOLLOW, 3, X, event_id="late-2")])
        assert _follows(loaded) == before and loaded.row(X) == -1 and loaded.ids.row(X) == -1

    def test_a_format_2_snapshot_still_loads_and_is_found_by_compaction(self, tmp_path: Path) -> None:
        """A format 2 snapshot (erased ids listed in the clear) loads with
        its erased users kept out; `snapshots_naming` finds it as holding
        their ids."""
        store = GraphStore.empty(clock=ManualClock(T0))
        store.apply_batch([*_world(), ev(K.ERASE_USER, X, event_id="erase")])
        snap = tmp_path / "old"
        write_snapshot(store, np.zeros((store.n_rows, 4), np.float32), faiss.IndexFlatIP(4), snap)
        # What format 2 wrote: the raw id in the id map and in erased.npy.
        ext = np.load(snap / "ids.ext.npy")
        ext[ext < 0] = X
        np.save(snap / "ids.ext.npy", ext)
        np.save(snap / "erased.npy", np.array([X], np.int64))
        manifest = json.loads((snap / "manifest.json").read_text())
        manifest["format_version"] = 2
        manifest.pop("erasure")
        del manifest["files"][f"{LEDGER}.npy"]
        for name in ("ids.ext.npy", "erased.npy"):
            manifest["files"][name] = hashlib.sha256((snap / name).read_bytes()).hexdigest()
        (snap / "manifest.json").write_text(json.dumps(manifest))
        old = read_snapshot(snap, GraphConfig(), ManualClock(T0)).store
        assert old.row(X) == -1 and old.is_erased(X) and old.ids.row(X) >= 0
        old.apply(ev(K.FOLLOW, 2, X, event_id="late"))
        assert (2, X) not in _follows(old)
        assert snapshots_naming(tmp_path, load_ledger(snap), keep=tmp_path / "elsewhere") == [snap]

    def test_the_snapshot_refuses_a_missing_or_other_key(self, tmp_path: Path) -> None:
        """A snapshot whose ledger cannot be checked is refused on load."""
        store = GraphStore.empty(clock=ManualClock(T0))
        store.apply_batch([*_world(), ev(K.ERASE_USER, X, event_id="erase")])
        write_snapshot(store, np.zeros((store.n_rows, 4), np.float32), faiss.IndexFlatIP(4), tmp_path / "snap")
        (tmp_path / KEY_FILE).write_text("ab" * 32 + "\n")
        with pytest.raises(SnapshotError, match="made with key"):
            read_snapshot(tmp_path / "snap", GraphConfig(), ManualClock(T0))
        os.unlink(tmp_path / KEY_FILE)
        with pytest.raises(SnapshotError, match="is missing"):
            read_snapshot(tmp_path / "snap", GraphConfig(), ManualClock(T0))

    def test_fold_with_a_ledger_equals_the_live_erasure(self) -> None:
        """Old events folded with a ledger that holds X (as hashes only) give
        the graph the live store has after erasing X; without the ledger X
        is back."""
        events = _world()
        live = GraphStore.empty(clock=ManualClock(T0))
        live.apply_batch(events)
        live.apply(ev(K.ERASE_USER, X, event_id="erase"))
        ledger = ErasureLedger(b"q" * 32)
        ledger.add(X)
        hashed_only = ErasureLedger(b"q" * 32, ledger.to_array())
        table = EventTable.from_events(events)
        rebuilt = fold(table, GraphConfig(), ManualClock(T0), ledger=hashed_only)
        assert rebuilt.ids.row(X) == -1 and rebuilt.is_erased(X)
        assert _follows(rebuilt) == _follows(live) - {(X, 1), (1, X)}
        assert len(rebuilt.reports) == 0 and rebuilt.interactions.count() == 0
        assert not any(str(X) in i.decode() for i in rebuilt.seen_ids.to_array().tolist())
        assert rebuilt.watermark == len(events)
        assert fold(table, GraphConfig(), ManualClock(T0)).ids.row(X) >= 0

    def test_fold_reads_redacted_stand_ins_as_no_ops(self) -> None:
        """A redacted WAL event (actor 0) counts for the watermark and
        changes nothing in the fold or the live store."""
        noop = ev(K.ERASE_USER, 0, event_id="redacted:abc")
        store = fold(EventTable.from_events([*_world()[:3], noop]), GraphConfig(), ManualClock(T0))
        assert store.watermark == 4 and store.ids.row(0) == -1 and len(store.ledger) == 0
        live = GraphStore.empty(clock=ManualClock(T0))
        noops = [ev(K.ERASE_USER, 0, event_id=f"redacted:{i}") for i in range(20)]
        assert live.apply_batch([*noops, ev(K.FOLLOW, 1, 2)]).applied == 21
        assert live.n_rows == 2 and live.ids.row(0) == -1


# --- the journal and the WAL ----------------------------------------------------------------------------------


def _wal_names(directory: Path) -> tuple[set[int], list[str]]:
    """Every user id and event id the log's records hold (decoded)."""
    users: set[int] = set()
    ids: list[str] = []
    for segment in list_segments(directory):
        for batch in WalReader(directory, segment.first_sequence - 1, segments=[segment]):
            for msg in batch.events:
                users.update(event_users(msg))
                ids.append(msg.event_id)
    return users, ids


class TestJournal:
    def test_events_naming_an_erased_user_are_logged_redacted_and_the_segment_sealed(self, tmp_path: Path) -> None:
        """After erase_user, events naming the user (later in the same
        batch or in later batches) are logged and applied as redacted
        stand-ins; the segment holding the erasure is sealed; the log
        replays to the live state."""
        store = GraphStore.empty(clock=ManualClock(T0))
        journal = Journal(store, WriteAheadLog.open(WalConfig(tmp_path / "wal")))
        first = [_follow("a", 1, 2), _follow("b", X, 1)]
        journal.commit([event_from_proto(m, T0) for m in first], messages=first, now=T0)
        batch = [_erase("e", X), _follow("c", 2, X), _follow("d", 2, 1)]
        result = journal.commit([event_from_proto(m, T0) for m in batch], messages=batch, now=T0)
        assert result.applied == 3 and result.events[1].actor == 0 and result.events[1].kind == K.ERASE_USER
        later = [_message("f", X, 2), _follow("g", 1, 3)]
        assert journal.commit([event_from_proto(m, T0) for m in later], messages=later, now=T0).applied == 2
        assert journal.wal is not None
        journal.wal.close()
        segments = list_segments(tmp_path / "wal")
        assert len(segments) == 2
        _, ids = _wal_names(tmp_path / "wal")
        assert "c" not in ids and "f" not in ids and sum(i.startswith("redacted:") for i in ids) == 2
        newest_users = {u for b in WalReader(tmp_path / "wal", segments[1].first_sequence - 1) for m in b.events
                        for u in event_users(m)}
        assert X not in newest_users
        replayed = GraphStore.empty(clock=ManualClock(T0))
        replay(tmp_path / "wal", replayed)
        assert _follows(replayed) == _follows(store) == {(1, 2), (2, 1), (1, 3)}
        assert replayed.watermark == store.watermark == 7
        assert replayed.last_event_time == store.last_event_time


def _raw_log(directory: Path, *, segment_bytes: int = 4096) -> tuple[list[ev_pb.GraphEvent], int]:
    """A log as an older build wrote it: events naming X before and after
    X's erasure, over several segments. Returns the messages and the
    erasure's sequence."""
    wal = WriteAheadLog.open(WalConfig(directory, segment_bytes=segment_bytes))
    msgs: list[ev_pb.GraphEvent] = []
    seq = 1
    erase_at = 0
    for i in range(200):
        batch = [_follow(f"w-{i}-0", 1 + i % 5, 2 + (i + 1) % 5), _message(f"w-{i}-1", 2 + i % 4, 1)]
        if i % 3 == 0:
            batch.append(_follow(f"w-{i}-{X}", X, 1 + i % 5) if i != 60 else _erase(f"erase-{X}", X))
        if i == 60:
            erase_at = seq + len(batch) - 1
        record = wal_record_pb2.WalRecord(first_sequence=seq, server_time=T0)
        record.events.extend(batch)
        wal.sync(wal.append(record))
        msgs += batch
        seq += len(batch)
    wal.close()
    return msgs, erase_at


def _snapshot_at(directory: Path, msgs: list[ev_pb.GraphEvent], watermark: int) -> None:
    store = GraphStore.empty(clock=ManualClock(T0))
    store.apply_batch([event_from_proto(m, T0) for m in msgs[:watermark]])
    write_snapshot(store, np.zeros((store.n_rows, 4), np.float32), faiss.IndexFlatIP(4), directory)


class _Crash(Exception):
    pass


class TestWalCompaction:
    def _setup(self, tmp_path: Path) -> tuple[Path, Path, int, GraphStore]:
        pristine = tmp_path / "pristine"
        msgs, erase_at = _raw_log(pristine)
        segments = list_segments(pristine)
        # A watermark inside a segment after the erasure: that segment must
        # be rewritten (kept records redacted), earlier ones removed.
        inside = [s for s in segments[:-2] if s.first_sequence > erase_at + 3]
        watermark = inside[0].first_sequence + 4
        snap = tmp_path / "snap"
        _snapshot_at(snap, msgs, watermark)
        expected = read_snapshot(snap, GraphConfig(), ManualClock(T0)).store
        replay(pristine, expected)
        return pristine, snap, watermark, expected

    def _check(self, wal_dir: Path, snap: Path, expected: GraphStore) -> None:
        WriteAheadLog.open(WalConfig(wal_dir)).close()
        store = read_snapshot(snap, GraphConfig(), ManualClock(T0)).store
        replay(wal_dir, store)
        assert store.watermark == expected.watermark
        assert _follows(store) == _follows(expected)
        assert store.interactions.count() == expected.interactions.count()
        read_wal_table([wal_dir])  # still a valid rebuild input

    def test_compaction_scrubs_the_log_and_it_replays_the_same(self, tmp_path: Path) -> None:
        """With the snapshot's ledger, compaction removes covered segments,
        rewrites the one holding the watermark without the records it
        covers and redacts every later event naming X; the log still
        replays onto the snapshot to the same state, and names X nowhere."""
        pristine, snap, watermark, expected = self._setup(tmp_path)
        ledger = load_ledger(snap)
        done = compact_log(pristine, watermark, ledger)
        assert done.removed and done.rewritten and done.redacted > 0 and not done.in_use and done.pending == 0
        users, ids = _wal_names(pristine)
        assert X not in users and not any(str(X) in i for i in ids)
        self._check(pristine, snap, expected)
        again = compact_log(pristine, watermark, ledger)
        assert (again.removed, again.rewritten, again.redacted) == ([], [], 0)

    def test_a_crash_at_any_step_leaves_a_valid_log(self, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """Compaction stopped before each fsync, rename and unlink in turn
        leaves a log that opens, replays to the same state and reads as a
        rebuild input; running it again finishes the job."""
        pristine, snap, watermark, expected = self._setup(tmp_path)
        ledger = load_ledger(snap)
        step = 0
        while True:
            wal_dir = tmp_path / f"wal-{step}"
            shutil.copytree(pristine, wal_dir)
            calls = {"n": 0}

            def crashing(real: Callable[..., Any], calls: dict[str, int], step: int) -> Callable[..., Any]:
                def op(*args: Any, **kwargs: Any) -> Any:
                    calls["n"] += 1
                    if calls["n"] > step:
                        raise _Crash
                    return real(*args, **kwargs)
                return op

            with monkeypatch.context() as m:
                for name in ("fsync", "replace", "unlink"):
                    m.setattr(os, name, crashing(getattr(os, name), calls, step))
                try:
                    compact_log(wal_dir, watermark, ledger)
                    finished = True
                except _Crash:
                    finished = False
            self._check(wal_dir, snap, expected)
            compact_log(wal_dir, watermark, ledger)
            assert X not in _wal_names(wal_dir)[0]
            self._check(wal_dir, snap, expected)
            if finished:
                break
            step += 1
        assert step > 5

    def test_a_running_server_s_open_segment_is_left_alone(self, tmp_path: Path) -> None:
        """While a writer holds the log, sealed segments are scrubbed and
        the open one only read (and reported if it names erased users)."""
        pristine, snap, watermark, _ = self._setup(tmp_path)
        writer = WriteAheadLog.open(WalConfig(pristine))
        try:
            newest = list_segments(pristine)[-1]
            before = newest.path.read_bytes()
            done = compact_log(pristine, watermark, load_ledger(snap))
            assert done.in_use and done.rewritten and newest.path.read_bytes() == before
            assert done.unscrubbed == [newest.path]
        finally:
            writer.close()

    def test_a_snapshot_without_the_erasure_is_refused(self, tmp_path: Path) -> None:
        """Compacting against a snapshot whose ledger lacks an erasure the
        covered log holds (a rebuild that missed it) would forget that
        erasure: refused, nothing touched."""
        pristine = tmp_path / "wal"
        _, erase_at = _raw_log(pristine)
        before = {p.name: p.read_bytes() for p in pristine.iterdir()}
        with pytest.raises(WalError, match="would forget the erasure"):
            compact_log(pristine, erase_at + 40, ErasureLedger())
        assert {p.name: p.read_bytes() for p in pristine.iterdir()} == before

    def test_erasures_after_the_watermark_stay_until_a_snapshot_covers_them(self, tmp_path: Path) -> None:
        """Against a snapshot from before the erasure nothing is redacted
        (replay still needs the erasure and what it wipes) and the pending
        erasure is counted."""
        pristine = tmp_path / "wal"
        msgs, erase_at = _raw_log(pristine)
        _snapshot_at(tmp_path / "snap", msgs, erase_at - 2)
        done = compact_log(pristine, erase_at - 2, load_ledger(tmp_path / "snap"))
        assert done.pending == 1 and done.redacted == 0 and X in _wal_names(pristine)[0]


# --- the guardian journal -------------------------------------------------------------------------------------


C, OTHER = 30, 17


def _registry(path: Path, clock: ManualClock) -> GuardianRegistry:
    return GuardianRegistry(KEY, clock, path)


def _link(reg: GuardianRegistry, guardian: str, child: int, clock: ManualClock) -> None:
    reg.link(guardian, child, issue_consent_token(KEY, guardian, child, clock.now()), child_known=True,
             child_is_minor=True)


class TestGuardianJournal:
    def _history(self, path: Path, clock: ManualClock) -> GuardianRegistry:
        reg = _registry(path, clock)
        _link(reg, "g-x", X, clock)  # X is a child
        reg.set_controls("g-x", X, child_is_minor=True, suggestions_enabled=False, messaging=None, add_removed=[2])
        reg.record_overview_read("g-x", X, child_is_minor=True)
        _link(reg, str(X), C, clock)  # X is a guardian of C
        reg.set_controls(str(X), C, child_is_minor=True, suggestions_enabled=None, messaging=Messaging.FRIENDS_ONLY,
                         add_removed=[])
        _link(reg, "g-c", C, clock)
        reg.set_controls("g-c", C, child_is_minor=True, suggestions_enabled=None, messaging=None,
                         add_removed=[X, OTHER])
        reg.observe_message(X, 2, clock.now())
        return reg

    def test_forget_keeps_what_the_other_party_needs(self, tmp_path: Path) -> None:
        """After forget_erased: X as a child is gone (links, controls,
        audit); X as C's guardian becomes a pseudonym whose controls still
        bind C and whose actions C still sees; X leaves C's removed
        contacts and audit details; the journal names X nowhere, a restart
        reads the same, and later writes naming X are scrubbed too."""
        clock = ManualClock(T0)
        path = tmp_path / "guardian" / "journal.jsonl"
        reg = self._history(path, clock)
        assert str(X) in path.read_text()
        assert reg.message_days(X, clock.now(), guardian="g-x")
        changed = reg.forget_erased(lambda ids: {X} & set(ids))
        assert changed > 0
        assert reg.links_of(X) == {} and reg.audit_of(X) == [] and reg.effective(X) is None
        assert reg.message_days(X, clock.now(), guardian="g-x") == {}
        links = reg.links_of(C)
        alias = next(g for g in links if g.startswith(ERASED_GUARDIAN_PREFIX))
        assert set(links) == {alias, "g-c"}
        effective = reg.effective(C)
        assert effective is not None and effective.messaging == Messaging.FRIENDS_ONLY
        assert effective.removed == frozenset({OTHER})
        audit = reg.audit_of(C)
        assert {r.guardian_id for r in audit} == {alias, "g-c"}
        assert any(r.detail == f"removed contacts [{OTHER}, an erased user]" for r in audit)
        assert str(X) not in path.read_text()
        reg.set_controls("g-c", C, child_is_minor=True, suggestions_enabled=None, messaging=None, add_removed=[X])
        with pytest.raises(Exception, match="no link"):
            reg.record_overview_read(str(X), C, child_is_minor=True)  # the erased account lost the link
        assert str(X) not in path.read_text()
        reg.close()
        again = _registry(path, clock)
        assert again.links_of(C) == links and again.effective(C) == reg.effective(C)
        again.close()

    def test_scrub_journal_waits_for_no_server(self, tmp_path: Path) -> None:
        """`wal compact`'s scrub leaves a journal a registry has open (the
        server scrubs its own) and rewrites it once it is closed."""
        clock = ManualClock(T0)
        path = tmp_path / "guardian" / "journal.jsonl"
        reg = self._history(path, clock)
        assert scrub_journal(path, lambda ids: {X} & set(ids)) is None
        reg.close()
        assert (scrub_journal(path, lambda ids: {X} & set(ids)) or 0) > 0
        assert str(X) not in path.read_text()
        again = _registry(path, clock)
        assert again.effective(C) is not None and again.links_of(X) == {}
        again.close()


# --- end to end -----------------------------------------------------------------------------------------------


PROFILES = (
    *(Profile(u, age_band=AgeBand.ADULT, message_privacy=MessagePrivacy.EVERYONE,
              account_state=AccountState.ACTIVE) for u in range(1, 9)),
    Profile(C, age_band=AgeBand.AGE_16_17, message_privacy=MessagePrivacy.EVERYONE,
            account_state=AccountState.ACTIVE, discoverable=True),
    Profile(X, age_band=AgeBand.AGE_13_15, message_privacy=MessagePrivacy.FRIENDS,
            account_state=AccountState.ACTIVE, discoverable=True),
)


def _raw_logs(directory: Path) -> list[Path]:
    """The backend's raw logs, X in them everywhere (event ids included)."""
    directory.mkdir(parents=True)
    rows: list[tuple[int, str, int, int, str]] = []
    t = int(T0) * 1000
    pairs = [(a, a % 8 + 1) for a in range(1, 9)] + [(C, 2), (X, 1), (X, 2), (X, C)]
    for a, b in pairs:
        rows += [(t, "follow", a, b, f"c-{a}-{b}"), (t + 1, "follow", b, a, f"c-{b}-{a}")]
        t += 1000
    for k in range(5):
        rows += [(t + k, "message", X, 1, f"m-{X}-{k}"), (t + k, "message", 3, 4, f"m-3-4-{k}")]
    rows.append((t + 10, "report", 5, X, f"r-5-{X}"))
    return [write_profile_csv(directory / "profiles.csv", PROFILES),
            write_edge_csv(directory / "edges.csv", [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                           [r[3] for r in rows], [r[4] for r in rows])]


class _Serving:
    def __init__(self, data: Path, clock: ManualClock) -> None:
        self.config = ServerConfig(snapshot=data / "snapshot", port=0, data_dir=data, guardian_key=KEY,
                                   wal=WalConfig(data / "wal", segment_bytes=4096), grace_s=0.5)
        self.state, journal = open_serving(self.config, clock, build_safety(self.config, clock))
        self.server, port = create_server(self.config, self.state, journal)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.graph = graph_service_pb2_grpc.GraphServiceStub(self.channel)
        self.guardian = guardian_service_pb2_grpc.GuardianServiceStub(self.channel)
        self.clock = clock

    @property
    def live(self) -> ServingState:
        return self.server.state

    def apply(self, *events: ev_pb.GraphEvent) -> graph_service_pb2.ApplyEventsResponse:
        return self.graph.ApplyEvents(graph_service_pb2.ApplyEventsRequest(events=list(events)), timeout=10)

    def link(self, guardian: str, child: int) -> None:
        token = issue_consent_token(KEY, guardian, child, self.clock.now())
        self.guardian.LinkGuardian(gpb.LinkGuardianRequest(guardian_id=guardian, child_user_id=child,
                                                           consent_token=token), timeout=10)

    def stop(self) -> None:
        self.channel.close()
        self.server.stop(0)
        self.live.safety.guardians.close()


def _decoded(path: Path) -> Iterator[Any]:
    """What a file holds, decoded as the system reads it."""
    if path.suffix == ".npy":
        yield np.load(path, allow_pickle=False)
    elif path.suffix == ".wal":
        segment = next(s for s in list_segments(path.parent) if s.path == path)
        only = [Segment(path, segment.first_sequence)]
        for batch in WalReader(path.parent, segment.first_sequence - 1, segments=only):
            for msg in batch.events:
                yield json_format.MessageToDict(msg)
                yield event_users(msg)
    elif path.suffix in (".json", ".ledger"):
        yield json.loads(path.read_text())
    elif path.suffix == ".jsonl":
        for line in path.read_text().splitlines():
            yield json.loads(line)


def _holds(value: Any, needle: int) -> bool:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iu":
            return bool((value == needle).any())
        if value.dtype.kind in "SU":
            return any(_holds(v, needle) for v in value.ravel().tolist())
        return False
    if isinstance(value, bytes):
        return str(needle).encode() in value
    if isinstance(value, str):
        return str(needle) in value
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == needle
    if isinstance(value, dict):
        return any(_holds(k, needle) or _holds(v, needle) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds(v, needle) for v in value)
    return False


def _files_naming(data: Path, user: int) -> list[str]:
    found = []
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if str(user).encode() in raw or struct.pack("<q", user) in raw or struct.pack(">q", user) in raw:
            found.append(f"{path.relative_to(data)} (bytes)")
        if any(_holds(v, user) for v in _decoded(path)):
            found.append(f"{path.relative_to(data)} (decoded)")
    return found


@pytest.mark.integration
class TestEndToEnd:
    def test_after_erasure_compaction_and_rebuild_no_file_holds_the_id(self, tmp_path: Path) -> None:
        """Raw logs and live events about X (follows, messages, a report,
        guardian links with X as child and as guardian, controls, audit),
        then erase X, rebuild, compact: every file of the data directory,
        decoded, names X nowhere; everyone else's graph and guardian state
        is intact after a restart; the old raw logs rebuilt with the
        ledger (from the snapshot or a ledger file) do not bring X back."""
        data = tmp_path / "data"
        logs = _raw_logs(tmp_path / "logs")
        clock = ManualClock(T0 + 3600)
        rebuild(logs, data / "snapshot", clock=clock)
        assert _files_naming(data, X)  # the test can see X where X is

        serving = _Serving(data, clock)
        try:
            for i in range(40):
                serving.apply(_follow(f"live-{i}", 1 + i % 8, 1 + (i + 3) % 8), _message(f"lm-{i}", X, 1 + i % 8))
            serving.apply(_follow(f"live-{X}", 4, X))
            serving.link("g-x", X)
            serving.guardian.SetGuardianControls(gpb.SetGuardianControlsRequest(
                guardian_id="g-x", child_user_id=X, suggestions_enabled=False), timeout=10)
            serving.guardian.GetGuardianOverview(gpb.GetGuardianOverviewRequest(guardian_id="g-x", child_user_id=X),
                                                 timeout=10)
            serving.link(str(X), C)
            serving.guardian.SetGuardianControls(gpb.SetGuardianControlsRequest(
                guardian_id=str(X), child_user_id=C, messaging=gpb.GUARDIAN_MESSAGING_FRIENDS_ONLY), timeout=10)
            serving.link("g-c", C)
            serving.guardian.SetGuardianControls(gpb.SetGuardianControlsRequest(
                guardian_id="g-c", child_user_id=C, add_removed_contact_ids=[X, 7]), timeout=10)
            assert str(X) in (data / "guardian" / "journal.jsonl").read_text()

            serving.apply(_erase(f"erase-{X}", X), _follow(f"after-{X}", 5, X))
            for i in range(10):
                serving.apply(_follow(f"post-{i}", 2 + i % 6, 1), _message(f"pm-{i}", 6, X))
            # At once: the guardian journal is scrubbed and X is gone.
            assert str(X) not in (data / "guardian" / "journal.jsonl").read_text()
            assert serving.live.store.row(X) == -1
            view = serving.guardian.GetGuardianTransparency(
                gpb.GetGuardianTransparencyRequest(child_user_id=C), timeout=10)
            assert view.controls.messaging == gpb.GUARDIAN_MESSAGING_FRIENDS_ONLY
            assert {link.guardian_id for link in view.links} == {"g-c", next(
                g.guardian_id for g in view.links if g.guardian_id.startswith(ERASED_GUARDIAN_PREFIX))}
            live_follows = _follows(serving.live.store)
        finally:
            serving.stop()

        # Rebuild from the raw logs and the log (the erasure is in it),
        # swap it in beside the old snapshot, compact.
        rebuild([*logs, data / "wal"], data / "snapshot.next", clock=clock)
        os.rename(data / "snapshot", data / "snapshot.prev")
        os.rename(data / "snapshot.next", data / "snapshot")
        assert cli(["wal", "compact", "--wal-dir", str(data / "wal"), "--snapshot", str(data / "snapshot")]) == 0
        assert not (data / "snapshot.prev").exists()
        write_ledger_file(load_ledger(data / "snapshot"), data / "erased.ledger")

        found = _files_naming(data, X)
        assert found == [], found

        # Everyone else is intact, after a restart that replays the log.
        serving = _Serving(data, clock)
        try:
            store = serving.live.store
            assert store.row(X) == -1
            assert _follows(store) == {p for p in live_follows if X not in p}
            assert _follows(store) >= {(a, a % 8 + 1) for a in range(1, 9)}
            view = serving.guardian.GetGuardianTransparency(
                gpb.GetGuardianTransparencyRequest(child_user_id=C), timeout=10)
            assert view.controls.messaging == gpb.GUARDIAN_MESSAGING_FRIENDS_ONLY
            assert list(view.controls.removed_contact_ids) == [7]
            assert len(view.links) == 2 and len(view.records) >= 4
        finally:
            serving.stop()
        assert _files_naming(data, X) == []

        # The old raw logs alone bring X back; with the ledger (from the
        # snapshot or the ledger file) they do not.
        table = read_inputs(logs, now=clock.now(), max_future_s=GraphConfig().max_future_s)
        as_of = float(np.nextafter(table.time.max(), np.inf))
        assert build(table, as_of, train=False).store.ids.row(X) >= 0
        for source in (data / "snapshot", data / "erased.ledger"):
            built = build(table, as_of, train=False, ledger=load_ledger(source))
            assert built.store.ids.row(X) == -1 and built.store.is_erased(X)
            assert (1, 2) in _follows(built.store)
        write_snapshot(built.store, built.vectors, built.index, data / "snapshot.from-logs")
        assert _files_naming(data, X) == []
