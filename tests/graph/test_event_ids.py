"""Event ids and the digest of their events' content (issue 20, item 4): a
retry (same id, same content) is a duplicate; the same id with other
content is refused, applying nothing; the digests survive snapshots and
write-ahead log replay; a snapshot written without digests keeps its ids
duplicates (content unknown)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.ann import build_index
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.errors import EventIdConflict
from graph.event_ids import UNKNOWN, EventIdSet, event_digests, split_batch
from graph.fold import fold
from graph.model import (
    AccountState,
    AgeAssurance,
    AgeBand,
    Event,
    EventKind,
    InteractionType,
    MessagePrivacy,
    Profile,
    ReportCategory,
)
from graph.snapshot import EVENT_DIGESTS, MANIFEST, read_snapshot, write_snapshot
from graph.store import GraphStore
from graph.table import EventTable
from service.durability.journal import Journal
from service.durability.wal import WriteAheadLog
from service.durability.wal_replay import replay
from service.server.config import WalConfig

K = EventKind
T = 1_750_000_000.0


def _digest(event: Event) -> int:
    return event_digests([event])[0]


_BASE_PROFILE = Profile(7, age_band=AgeBand.ADULT, message_privacy=MessagePrivacy.EVERYONE,
                        account_state=AccountState.ACTIVE, region_code="GB", discoverable=True,
                        age_assurance=AgeAssurance.DECLARED)
_FOLLOW = Event("x", T, K.FOLLOW, 1, 2)


class TestDigest:
    @pytest.mark.parametrize("other", [
        Event("x", T, K.BLOCK, 1, 2),
        Event("x", T, K.FOLLOW, 2, 1),
        Event("x", T, K.FOLLOW, 1, 3),
        Event("x", T, K.FOLLOW, 3, 2),
        Event("x", T, K.INTERACTION, 1, 2, int(InteractionType.MESSAGE)),
        Event("x", T, K.REPORT, 1, 2, int(ReportCategory.SPAM)),
        Event("x", T, K.ERASE_USER, 1),
    ])
    def test_other_content_other_digest(self, other: Event) -> None:
        """Any change of kind, actor, target or detail changes the digest."""
        assert _digest(other) != _digest(_FOLLOW)

    @pytest.mark.parametrize("change", [
        {"age_band": AgeBand.AGE_16_17}, {"age_band": None},
        {"message_privacy": MessagePrivacy.NO_ONE}, {"message_privacy": None},
        {"account_state": AccountState.BANNED}, {"account_state": None},
        {"region_code": "US"}, {"region_code": "419"}, {"region_code": None},
        {"discoverable": False}, {"discoverable": None},
        {"age_assurance": AgeAssurance.VERIFIED}, {"age_assurance": None},
    ])
    def test_every_profile_field_counts(self, change: dict[str, object]) -> None:
        """A profile update that differs in one field, or leaves it out, has
        another digest."""
        fields = {f: getattr(_BASE_PROFILE, f) for f in _BASE_PROFILE.__slots__}  # type: ignore[attr-defined]
        base = Event("p", T, K.PROFILE, 7, profile=_BASE_PROFILE)
        other = Event("p", T, K.PROFILE, 7, profile=Profile(**{**fields, **change}))  # type: ignore[arg-type]
        assert _digest(other) != _digest(base)

    def test_id_and_time_do_not_count(self) -> None:
        """The id is the key, not the content; event_time is clamped by the
        server, so a retry stamped anew is still the same event."""
        assert _digest(Event("y", T + 99.5, K.FOLLOW, 1, 2)) == _digest(_FOLLOW)

    def test_never_unknown(self) -> None:
        """No digest is UNKNOWN (it means "content not known")."""
        events = [Event("x", T, K.FOLLOW, a, b) for a in range(1, 60) for b in range(1, 60) if a != b]
        assert UNKNOWN not in event_digests(events)


class TestSplitBatch:
    # (ids and digests applied before, None = UNKNOWN; batch as (id,
    # digest); expected picked positions, or the conflicting position)
    CASES: ClassVar[list[tuple[dict[str, int | None], list[tuple[str, int]], list[int] | tuple[str, int]]]] = [
        ({}, [("a", 1), ("b", 2)], [0, 1]),
        ({"a": 1}, [("a", 1)], []),                      # exact retry
        ({"a": 1}, [("a", 2)], ("conflict", 0)),         # reuse, other content
        ({}, [("a", 1), ("a", 1)], [0]),                 # repeated in the batch
        ({}, [("a", 1), ("b", 3), ("a", 2)], ("conflict", 2)),
        ({"a": None}, [("a", 5)], []),                   # content unknown: duplicate
        ({}, [("", 1), ("", 2)], [0, 1]),                # no id: never a duplicate
        ({"a": 1}, [("b", 2), ("a", 1), ("b", 2), ("c", 9)], [0, 3]),
    ]

    @pytest.mark.parametrize(("before", "batch", "expected"), CASES)
    def test_rule(self, before: dict[str, int | None], batch: list[tuple[str, int]],
                  expected: list[int] | tuple[str, int]) -> None:
        """Duplicates are left out; a reuse with other content raises
        naming its position."""
        seen = EventIdSet.from_ids(["base-only"], np.array([77], np.uint64))
        for eid, digest in before.items():
            seen.add(eid, UNKNOWN if digest is None else digest)
        ids, digests = [b[0] for b in batch], [b[1] for b in batch]
        if isinstance(expected, tuple):
            with pytest.raises(EventIdConflict) as caught:
                split_batch(seen, ids, digests)
            assert caught.value.index == expected[1]
        else:
            assert split_batch(seen, ids, digests) == expected

    def test_base_digests_are_found(self) -> None:
        """Ids in the snapshot's sorted base keep their digests; a base
        without digests answers UNKNOWN."""
        with_digests = EventIdSet.from_ids(["b", "a", "ünï"], np.array([2, 1, 3], np.uint64))
        assert with_digests.digests_of(["a", "b", "ünï", "c", ""]) == [1, 2, 3, None, None]
        assert EventIdSet.from_ids(["a"]).digests_of(["a", "b"]) == [UNKNOWN, None]

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(1, 3)), max_size=6), max_size=8),
           st.integers(0, 8))
    def test_against_a_dict(self, batches: list[list[tuple[str, int]]], snapshot_after: int) -> None:
        """Batches against a plain dict oracle (id -> digest of its first
        event); halfway the set goes through its on-disk form (to_arrays)
        and answers the same."""
        seen, oracle = EventIdSet(), {}
        for n, batch in enumerate(batches):
            if n == snapshot_after:
                seen = EventIdSet(*seen.to_arrays())
            ids, digests = [b[0] for b in batch], [b[1] for b in batch]
            expected: list[int] | None = []
            trial = dict(oracle)
            for i, (eid, digest) in enumerate(batch):
                if eid in trial:
                    if trial[eid] != digest:
                        expected = None
                        break
                    continue
                trial[eid] = digest
                assert expected is not None
                expected.append(i)
            if expected is None:
                with pytest.raises(EventIdConflict):
                    split_batch(seen, ids, digests)
                continue
            assert split_batch(seen, ids, digests) == expected
            seen.record([ids[i] for i in expected], [digests[i] for i in expected])
            oracle = trial
        assert len(seen) == len(oracle)


def _store() -> GraphStore:
    return GraphStore.empty(GraphConfig(), ManualClock(T + 60))


def _write(store: GraphStore, out: Path) -> None:
    vectors = np.zeros((store.n_rows, 4), np.float32)
    vectors[:, 0] = 1.0
    write_snapshot(store, vectors, build_index(vectors), out)


FIRST = [Event("f-1", T, K.FOLLOW, 1, 2), Event("m-1", T, K.INTERACTION, 1, 3, int(InteractionType.MESSAGE)),
         Event("p-1", T, K.PROFILE, 3, profile=Profile(3, age_band=AgeBand.ADULT))]
REUSES = [Event("f-1", T, K.BLOCK, 1, 2), Event("m-1", T, K.INTERACTION, 1, 3, int(InteractionType.SHARE)),
          Event("p-1", T, K.PROFILE, 3, profile=Profile(3, age_band=AgeBand.AGE_13_15))]


def _assert_retry_and_reuse(journal: Journal) -> None:
    """Exact retries are duplicates; each reuse with other content is
    refused, applying nothing (not even the new event before it)."""
    store = journal.store
    watermark = store.watermark
    assert journal.commit(FIRST).duplicates == len(FIRST)
    for i, reuse in enumerate(REUSES):
        with pytest.raises(EventIdConflict) as caught:
            journal.commit([Event(f"new-{i}", T, K.FOLLOW, 5, 6), reuse])
        assert caught.value.index == 1
    assert store.watermark == watermark and "new-0" not in store.seen_ids
    assert not store.is_blocked_either(store.row(1), store.row(2))


class TestAcrossRestarts:
    def test_live_store(self) -> None:
        """The issue's case: a block sent with a follow's id is refused, and
        the follow stays the one event applied under that id."""
        journal = Journal(_store())
        journal.commit(FIRST)
        _assert_retry_and_reuse(journal)

    def test_wal_replay_keeps_digests(self, tmp_path: Path) -> None:
        """After a restart that replays the log onto an empty store, a reuse
        is still refused and a retry still a duplicate."""
        wal_dir = tmp_path / "wal"
        wal = WriteAheadLog.open(WalConfig(wal_dir, segment_bytes=4096, fsync=False))
        Journal(_store(), wal).commit(FIRST)
        wal.close()
        restarted = _store()
        assert replay(wal_dir, restarted).events == len(FIRST)
        _assert_retry_and_reuse(Journal(restarted))

    def test_snapshot_keeps_digests(self, tmp_path: Path) -> None:
        """A snapshot of a live store (and of a rebuild's fold) keeps each
        id's digest."""
        live = _store()
        Journal(live).commit(FIRST)
        _write(live, tmp_path / "live")
        _assert_retry_and_reuse(Journal(read_snapshot(tmp_path / "live", GraphConfig(), ManualClock(T)).store))
        _write(fold(EventTable.from_events(FIRST), GraphConfig(), ManualClock(T)), tmp_path / "rebuilt")
        _assert_retry_and_reuse(Journal(read_snapshot(tmp_path / "rebuilt", GraphConfig(), ManualClock(T)).store))

    def test_snapshot_without_digests_fails_closed_as_before(self, tmp_path: Path) -> None:
        """A snapshot written before digests were kept still loads; its ids
        stay duplicates whatever is sent with them (the content is unknown,
        so a reuse cannot be told from a retry); ids applied after loading
        are checked."""
        live = _store()
        Journal(live).commit(FIRST)
        out = tmp_path / "old"
        _write(live, out)
        (out / f"{EVENT_DIGESTS}.npy").unlink()
        manifest = json.loads((out / MANIFEST).read_text())
        del manifest["files"][f"{EVENT_DIGESTS}.npy"]
        (out / MANIFEST).write_text(json.dumps(manifest))
        store = read_snapshot(out, GraphConfig(), ManualClock(T)).store
        journal = Journal(store)
        result = journal.commit([*REUSES, Event("after", T, K.FOLLOW, 7, 8)])
        assert (result.applied, result.duplicates) == (1, len(REUSES))
        assert not store.is_blocked_either(store.row(1), store.row(2))
        with pytest.raises(EventIdConflict):
            journal.commit([Event("after", T, K.BLOCK, 7, 8)])
