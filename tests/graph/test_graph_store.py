"""GraphStore: the effect of every event kind, interaction decay, erasure,
idempotent retries, and property tests of follows, friends,
friends-of-friends, interactions, blocks and mutes against an independent
oracle (networkx + plain dicts), before and after compaction."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.errors import EventIdConflict
from graph.ids import IdMap
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
    Surface,
    encode_region,
)
from graph.store import GraphStore

T0 = 1_700_000_000.0
HALF_LIFE = 3600.0
K = EventKind

_ids = itertools.count(1)


def ev(kind: EventKind, actor: int, target: int = 0, *, time: float = T0, detail: int = 0,
       event_id: str | None = None, profile: Profile | None = None) -> Event:
    """An event with a fresh event id unless one is given."""
    if kind == K.INTERACTION and detail == 0:
        detail = int(InteractionType.MESSAGE)
    return Event(f"e{next(_ids)}" if event_id is None else event_id, time, kind, actor, target, detail, profile)


def make_store(half_life: float = HALF_LIFE, now: float = T0) -> GraphStore:
    return GraphStore.empty(GraphConfig(half_life_s=half_life), ManualClock(now))


def ext_set(store: GraphStore, rows: np.ndarray) -> set[int]:
    """External ids of rows (int32 array) as a set."""
    return set(store.ids.ext(rows).tolist()) if rows.shape[0] else set()


def all_rows(store: GraphStore) -> np.ndarray:
    return np.arange(store.n_rows, dtype=np.int32)


# -- readers used by the tables: external id -> set of external ids ----------------

def _following(s: GraphStore, u: int) -> set[int]:
    return ext_set(s, s.following(s.row(u)))


def _followers(s: GraphStore, u: int) -> set[int]:
    return ext_set(s, s.followers(s.row(u)))


def _friends(s: GraphStore, u: int) -> set[int]:
    return ext_set(s, s.friends_of(s.row(u)))


def _blocked_either(s: GraphStore, u: int) -> set[int]:
    rows = all_rows(s)
    return ext_set(s, rows[s.blocked_either(s.row(u), rows)])


def _muted(s: GraphStore, u: int) -> set[int]:
    rows = all_rows(s)
    return ext_set(s, rows[s.muted(s.row(u), rows)])


def _partners(s: GraphStore, u: int) -> set[int]:
    return ext_set(s, s.interaction_partners(s.row(u))[0])


def _inbound(s: GraphStore, u: int) -> set[int]:
    return ext_set(s, s.inbound_interactions(s.row(u))[0])


READERS: dict[str, Callable[[GraphStore, int], set[int]]] = {
    "following": _following,
    "followers": _followers,
    "friends": _friends,
    "blocked_either": _blocked_either,
    "muted": _muted,
    "partners": _partners,
    "inbound": _inbound,
}
LOGS = ("unfollows", "unblocks", "reports", "dismissals")

F, UF, B, UB, M, UM, R, D, IA = (K.FOLLOW, K.UNFOLLOW, K.BLOCK, K.UNBLOCK, K.MUTE, K.UNMUTE, K.REPORT,
                                K.DISMISS, K.INTERACTION)

# (events as (kind, actor, target[, detail]), expectations). Event i happens
# at T0 + i. Per-user readers map a user to the expected set of users (users
# not named must be empty); a pair log maps (actor, target) to
# (index of the recording event, detail), and must hold nothing else.
EVENT_TABLE = [
    pytest.param([(F, 1, 2)],
                 {"following": {1: {2}, 2: set()}, "followers": {2: {1}, 1: set()},
                  "friends": {1: set(), 2: set()}},
                 id="follow-is-one-way"),
    pytest.param([(F, 1, 2), (F, 2, 1)],
                 {"following": {1: {2}, 2: {1}}, "friends": {1: {2}, 2: {1}}},
                 id="mutual-follow-makes-friends"),
    pytest.param([(F, 1, 2), (F, 1, 2), (F, 1, 3)],
                 {"following": {1: {2, 3}}, "followers": {2: {1}, 3: {1}}, "friends": {1: set()}},
                 id="follow-twice-is-idempotent"),
    pytest.param([(F, 1, 2), (F, 2, 1), (UF, 1, 2)],
                 {"following": {1: set(), 2: {1}}, "followers": {1: {2}, 2: set()},
                  "friends": {1: set(), 2: set()}, "unfollows": {(1, 2): (2, 0)}},
                 id="unfollow-breaks-friendship-and-is-recorded"),
    pytest.param([(F, 1, 2), (UF, 1, 2), (F, 1, 2), (F, 2, 1)],
                 {"following": {1: {2}, 2: {1}}, "friends": {1: {2}, 2: {1}}, "unfollows": {(1, 2): (1, 0)}},
                 id="refollow-after-unfollow"),
    pytest.param([(UF, 1, 2)],
                 {"following": {1: set()}, "unfollows": {}},
                 id="unfollow-without-follow-records-nothing"),
    pytest.param([(B, 1, 2)],
                 {"blocked_either": {1: {2}, 2: {1}, 3: set()}, "following": {1: set()}},
                 id="block-hides-both-users-from-each-other"),
    pytest.param([(B, 1, 2), (UB, 1, 2)],
                 {"blocked_either": {1: set(), 2: set()}, "unblocks": {(1, 2): (1, 0)}},
                 id="unblock-lifts-block-and-is-recorded"),
    pytest.param([(B, 1, 2), (B, 2, 1), (UB, 1, 2)],
                 {"blocked_either": {1: {2}, 2: {1}}, "unblocks": {(1, 2): (2, 0)}},
                 id="unblock-leaves-the-other-sides-block"),
    pytest.param([(UB, 1, 2)],
                 {"blocked_either": {1: set()}, "unblocks": {}},
                 id="unblock-without-block-records-nothing"),
    pytest.param([(M, 1, 2)],
                 {"muted": {1: {2}, 2: set()}, "blocked_either": {1: set()}},
                 id="mute-is-one-way"),
    pytest.param([(M, 1, 2), (UM, 1, 2)],
                 {"muted": {1: set(), 2: set()}},
                 id="unmute-lifts-mute"),
    pytest.param([(R, 1, 2, ReportCategory.SPAM)],
                 {"reports": {(1, 2): (0, ReportCategory.SPAM)}, "blocked_either": {1: set()}},
                 id="report-recorded-with-time-and-category"),
    pytest.param([(R, 1, 2, ReportCategory.SPAM), (R, 1, 2, ReportCategory.HARASSMENT)],
                 {"reports": {(1, 2): (1, ReportCategory.HARASSMENT)}},
                 id="newest-report-wins"),
    pytest.param([(D, 1, 2, Surface.SHARE_SHEET)],
                 {"dismissals": {(1, 2): (0, Surface.SHARE_SHEET)}},
                 id="dismiss-recorded-with-time-and-surface"),
    pytest.param([(IA, 1, 2, InteractionType.LIKE)],
                 {"partners": {1: {2}, 2: set()}, "inbound": {2: {1}, 1: set()}, "following": {1: set()},
                  "friends": {1: set()}},
                 id="interaction-is-directed-and-makes-no-follow"),
]


def _apply_table_events(store: GraphStore, events: list[tuple[Any, ...]]) -> None:
    batch = [ev(e[0], e[1], e[2], time=T0 + i, detail=int(e[3]) if len(e) > 3 else 0)
             for i, e in enumerate(events)]
    result = store.apply_batch(batch)
    assert (result.applied, result.duplicates) == (len(batch), 0)


class TestEventKinds:
    @pytest.mark.parametrize("compacted", [False, True], ids=["overlay", "compacted"])
    @pytest.mark.parametrize(("events", "expected"), EVENT_TABLE)
    def test_effect(self, events: list[tuple[Any, ...]], expected: dict[str, dict[Any, Any]],
                    compacted: bool) -> None:
        """Each event kind changes exactly the relations and logs it should,
        whether read from the overlay or from a compacted base."""
        store = make_store()
        _apply_table_events(store, events)
        if compacted:
            store.compact()
        for name, per_user in expected.items():
            if name in LOGS:
                log = getattr(store, name)
                assert len(log) == len(per_user), name
                for (a, b), (index, detail) in per_user.items():
                    assert log.get(store.row(a), store.row(b)) == (T0 + index, int(detail)), name
                continue
            for user, want in per_user.items():
                assert READERS[name](store, user) == want, (name, user)

    @pytest.mark.parametrize("split", [False, True], ids=["one-batch", "one-event-per-batch"])
    def test_batching_does_not_change_the_outcome(self, split: bool) -> None:
        """The same events give the same graph in one batch or one by one."""
        events = [(F, 1, 2), (F, 2, 1), (F, 3, 1), (F, 1, 3), (UF, 3, 1), (B, 4, 1), (M, 2, 4), (IA, 1, 2)]
        store = make_store()
        if split:
            for i, e in enumerate(events):
                assert store.apply(ev(e[0], e[1], e[2], time=T0 + i))
        else:
            _apply_table_events(store, events)
        assert _friends(store, 1) == {2}
        assert _following(store, 1) == {2, 3}
        assert _followers(store, 1) == {2}
        assert _blocked_either(store, 1) == {4}
        assert _muted(store, 2) == {4}
        assert len(store.unfollows) == 1
        assert store.watermark == len(events)


def _befriend(a: int, b: int) -> list[Event]:
    return [ev(F, a, b), ev(F, b, a)]


def _fof(store: GraphStore, u: int) -> dict[int, int]:
    rows, counts = store.friends_of_friends(store.row(u))
    return dict(zip(store.ids.ext(rows).tolist(), counts.tolist(), strict=True))


class TestFriendsOfFriends:
    """1 is friends with 2, 3, 4; 2 with 5, 6; 3 with 5; 4 with 6, 7."""

    @pytest.fixture
    def store(self) -> GraphStore:
        store = make_store()
        pairs = [(1, 2), (1, 3), (1, 4), (2, 5), (2, 6), (3, 5), (4, 6), (4, 7)]
        store.apply_batch([e for a, b in pairs for e in _befriend(a, b)])
        return store

    @pytest.mark.parametrize("compacted", [False, True], ids=["overlay", "compacted"])
    def test_counts_common_friends(self, store: GraphStore, compacted: bool) -> None:
        """Each friend of a friend comes with the number of friends shared;
        the user and his friends are left out."""
        if compacted:
            store.compact()
        assert _fof(store, 1) == {5: 2, 6: 2, 7: 1}
        assert _fof(store, 5) == {1: 2, 6: 1}
        rows, _ = store.friends_of_friends(store.row(1))
        assert rows.dtype == np.int32 and np.all(np.diff(rows) > 0)

    def test_overlay_changes_to_friends_of_friends(self, store: GraphStore) -> None:
        """Friendships lost and made after the base, over several overlay
        layers (as during a background compaction), change the counts."""
        store.compact()
        store.apply(ev(UF, 3, 5))
        assert _fof(store, 1) == {5: 1, 6: 2, 7: 1}
        store.apply_batch(_befriend(2, 8))
        assert _fof(store, 1) == {5: 1, 6: 2, 7: 1, 8: 1}
        with store.lock:
            store.friends.freeze()
            store.follows.freeze()
        store.apply_batch([ev(F, 3, 5), ev(UF, 7, 4), ev(UF, 8, 2), *_befriend(3, 9)])
        assert _fof(store, 1) == {5: 2, 6: 2, 9: 1}
        store.apply(ev(UF, 2, 6))
        assert _fof(store, 1) == {5: 2, 6: 1, 9: 1}
        before = store.friends_of_friends(store.row(1))
        store.compact()
        after = store.friends_of_friends(store.row(1))
        assert all(np.array_equal(x, y) for x, y in zip(before, after, strict=True))


class TestInteractionDecay:
    def test_strength_halves_after_one_half_life(self) -> None:
        """A message weighs 1.0 and halves each half-life on the injected clock."""
        store = make_store()
        store.apply(ev(IA, 1, 2, time=T0, detail=InteractionType.MESSAGE))
        a, b = store.row(1), store.row(2)
        assert store.strength(a, b) == pytest.approx(1.0)
        store.clock.advance(HALF_LIFE)  # type: ignore[attr-defined]
        assert store.strength(a, b) == pytest.approx(0.5)
        assert store.interaction_partners(a)[1].tolist() == pytest.approx([0.5])
        assert store.inbound_interactions(b)[1].tolist() == pytest.approx([0.5])
        assert store.top_interactions(a, 1)[1].tolist() == pytest.approx([0.5])
        store.clock.advance(HALF_LIFE)  # type: ignore[attr-defined]
        assert store.strength(a, b) == pytest.approx(0.25)
        assert store.strength(b, a) == 0.0

    def test_update_decays_old_strength_then_adds_weight(self) -> None:
        """A second interaction one half-life later: 1.0 * 0.5 + weight."""
        store = make_store()
        store.apply(ev(IA, 1, 2, time=T0, detail=InteractionType.MESSAGE))
        store.apply(ev(IA, 1, 2, time=T0 + HALF_LIFE, detail=InteractionType.SHARE))
        rows, strength, last = store.interaction_partners(store.row(1), now=T0 + HALF_LIFE)
        assert rows.tolist() == [store.row(2)]
        assert strength[0] == pytest.approx(0.5 + 0.6, rel=1e-6)
        assert last.tolist() == [int(T0 + HALF_LIFE)]

    def test_late_event_is_decayed_to_the_newest_time(self) -> None:
        """An out-of-order event adds weight * 2**(-lateness/half_life) and
        keeps the newer last-update time."""
        store = make_store()
        store.apply(ev(IA, 1, 2, time=T0 + HALF_LIFE, detail=InteractionType.MESSAGE))
        store.apply(ev(IA, 1, 2, time=T0, detail=InteractionType.SHARE))
        _, strength, last = store.interaction_partners(store.row(1), now=T0 + HALF_LIFE)
        assert strength[0] == pytest.approx(1.0 + 0.6 * 0.5, rel=1e-6)
        assert last.tolist() == [int(T0 + HALF_LIFE)]
        store.compact()
        assert store.strength(store.row(1), store.row(2), now=T0 + 2 * HALF_LIFE) == pytest.approx(0.65, rel=1e-6)

    def test_times_are_floored_to_whole_seconds(self) -> None:
        """Event times feed decay in whole seconds (floor)."""
        store = make_store()
        store.apply(ev(IA, 1, 2, time=T0 + 0.99))
        _, _, last = store.interaction_partners(store.row(1))
        assert last.tolist() == [int(T0)]

    def test_top_interactions_strongest_first_ties_by_row(self) -> None:
        """top_interactions orders by decayed strength, ties by row, and cuts at k."""
        store = make_store()
        store.apply_batch([
            ev(IA, 1, 2, time=T0, detail=InteractionType.LIKE),
            ev(IA, 1, 3, time=T0, detail=InteractionType.MESSAGE),
            ev(IA, 1, 4, time=T0, detail=InteractionType.COMMENT),
            ev(IA, 1, 5, time=T0, detail=InteractionType.MENTION),
        ])
        rows, strength = store.top_interactions(store.row(1), 3, now=T0)
        assert store.ids.ext(rows).tolist() == [3, 4, 5]
        assert strength.tolist() == pytest.approx([1.0, 0.4, 0.4], rel=1e-6)
        assert store.top_interactions(store.row(1), 0, now=T0)[0].shape == (0,)


class TestProfiles:
    def test_partial_update_keeps_other_fields(self) -> None:
        """A profile event sets only the fields it carries."""
        store = make_store()
        store.apply(ev(K.PROFILE, 7, profile=Profile(
            7, age_band=AgeBand.AGE_16_17, message_privacy=MessagePrivacy.FRIENDS, region_code="GB",
            discoverable=False, account_state=AccountState.ACTIVE, age_assurance=AgeAssurance.ESTIMATED)))
        store.apply(ev(K.PROFILE, 7, profile=Profile(7, message_privacy=MessagePrivacy.NO_ONE)))
        row = store.row(7)
        col = store.profiles.column
        assert bool(col("has_profile")[row])
        assert col("age_band")[row] == AgeBand.AGE_16_17
        assert col("message_privacy")[row] == MessagePrivacy.NO_ONE
        assert col("region")[row] == encode_region("GB")
        assert col("discoverable")[row] == 0
        assert col("account_state")[row] == AccountState.ACTIVE
        assert col("age_assurance")[row] == AgeAssurance.ESTIMATED

    def test_user_first_seen_in_an_edge_has_no_profile(self) -> None:
        """A user created by an edge event gets blank profile columns."""
        store = make_store()
        store.apply(ev(F, 1, 2))
        row = store.row(2)
        assert not store.profiles.column("has_profile")[row]
        assert store.profiles.column("discoverable")[row] == -1
        assert len(store.profiles) == store.n_rows


def _erase_fixture() -> list[Event]:
    return [
        ev(F, 1, 2), ev(F, 2, 1), ev(F, 3, 1), ev(F, 1, 4), ev(F, 2, 3), ev(F, 3, 2),
        ev(B, 1, 5), ev(B, 6, 1), ev(M, 1, 3), ev(M, 4, 1),
        ev(IA, 1, 2), ev(IA, 3, 1),
        ev(R, 1, 3, detail=ReportCategory.SPAM), ev(R, 4, 1, detail=ReportCategory.OTHER),
        ev(D, 1, 6, detail=Surface.NEW_CONTACTS),
        ev(K.PROFILE, 1, profile=Profile(1, age_band=AgeBand.ADULT)),
    ]


class TestEraseUser:
    @pytest.mark.parametrize("compact_before", [False, True], ids=["overlay", "base"])
    @pytest.mark.parametrize("compact_after", [False, True], ids=["read-overlay", "read-compacted"])
    def test_removes_every_edge_in_both_directions(self, compact_before: bool, compact_after: bool) -> None:
        """After erase_user no relation, log or profile mentions the user."""
        store = make_store()
        store.apply_batch(_erase_fixture())
        if compact_before:
            store.compact()
        old = store.row(1)
        stored_before = store.stored_edges()
        store.apply(ev(K.ERASE_USER, 1))
        if compact_after:
            store.compact()
        assert store.row(1) == -1
        assert 1 in store.erased
        for reader in (store.following, store.followers, store.friends_of):
            assert reader(old).shape == (0,)
        assert store.interaction_partners(old)[0].shape == (0,)
        assert store.inbound_interactions(old)[0].shape == (0,)
        for user in range(2, 7):
            for name, reader in READERS.items():
                assert 1 not in reader(store, user), (name, user)
            assert old not in store.friends_of_friends(store.row(user))[0].tolist()
        assert _friends(store, 2) == {3}
        for name in LOGS:
            log = getattr(store, name)
            assert log.targets_of(old).shape == (0,) and log.actors_about(old).shape == (0,), name
        assert len(store.reports) == 0 and len(store.dismissals) == 0
        assert not store.profiles.column("has_profile")[old]
        # 4 follows, 2 blocks, 2 mutes and 2 interactions touched user 1.
        assert store.stored_edges() == stored_before - 10

    @pytest.mark.parametrize("same_batch", [False, True], ids=["later-batch", "same-batch"])
    def test_later_events_about_the_erased_user_are_ignored(self, same_batch: bool) -> None:
        """Events naming an erased user, as actor or target, change nothing,
        including events later in the batch that erased him."""
        store = make_store()
        store.apply_batch(_erase_fixture())
        later = [ev(F, 1, 2), ev(F, 2, 1), ev(IA, 1, 3), ev(IA, 3, 1), ev(B, 1, 4), ev(M, 5, 1),
                 ev(R, 2, 1), ev(K.PROFILE, 1, profile=Profile(1, age_band=AgeBand.ADULT))]
        if same_batch:
            store.apply_batch([ev(K.ERASE_USER, 1), *later])
        else:
            store.apply(ev(K.ERASE_USER, 1))
            store.apply_batch(later)
        old = store.ids.row(1)
        assert store.row(1) == -1
        for reader in (store.following, store.followers, store.friends_of):
            assert reader(old).shape == (0,)
        assert store.interaction_partners(old)[0].shape == (0,)
        assert store.inbound_interactions(old)[0].shape == (0,)
        for user in range(2, 7):
            for name, reader in READERS.items():
                assert 1 not in reader(store, user), (name, user)
        assert len(store.reports) == 0
        assert not store.profiles.column("has_profile")[old]

    def test_erasing_an_unknown_user_blocks_future_events(self) -> None:
        """erase_user for an id never seen still keeps that id out."""
        store = make_store()
        store.apply(ev(K.ERASE_USER, 42))
        store.apply(ev(F, 42, 1))
        assert store.row(42) == -1
        assert _followers(store, 1) == set()


class TestIdempotency:
    def test_duplicate_ids_within_a_batch(self) -> None:
        """A repeated event (same id, same content) in one batch counts as a
        duplicate and applies once."""
        store = make_store()
        e = ev(IA, 1, 2, event_id="x")
        result = store.apply_batch([e, e, ev(IA, 1, 2, event_id="x")])
        assert (result.applied, result.duplicates, result.watermark) == (1, 2, 1)
        assert store.strength(store.row(1), store.row(2)) == pytest.approx(1.0)
        assert _following(store, 1) == set()

    def test_reused_id_with_other_content_in_a_batch_applies_nothing(self) -> None:
        """The same id with other content later in a batch is refused
        (EventIdConflict naming its position) and nothing of the batch is
        applied."""
        store = make_store()
        e = ev(IA, 1, 2, event_id="x")
        with pytest.raises(EventIdConflict) as caught:
            store.apply_batch([ev(IA, 3, 4, event_id="y"), e, ev(F, 1, 2, event_id="x")])
        assert caught.value.index == 2
        assert store.watermark == 0 and "x" not in store.seen_ids and "y" not in store.seen_ids
        assert _following(store, 1) == set()

    def test_retried_batch_is_all_duplicates(self) -> None:
        """Retrying an applied batch changes nothing and counts every event."""
        store = make_store()
        batch = [ev(IA, 1, 2), ev(F, 1, 2), ev(UF, 1, 2)]
        store.apply_batch(batch)
        store.compact()
        result = store.apply_batch(batch)
        assert (result.applied, result.duplicates, result.watermark) == (0, 3, 3)
        assert store.strength(store.row(1), store.row(2)) == pytest.approx(1.0)
        assert not store.apply(batch[0])

    def test_empty_event_id_is_never_a_duplicate(self) -> None:
        """Events without an id cannot be deduplicated and always apply."""
        store = make_store()
        result = store.apply_batch([ev(IA, 1, 2, event_id=""), ev(IA, 1, 2, event_id="")])
        assert (result.applied, result.duplicates) == (2, 0)
        assert store.strength(store.row(1), store.row(2)) == pytest.approx(2.0)


def _assert_empty_answers(store: GraphStore, row: int) -> None:
    for array in (store.following(row), store.followers(row), store.friends_of(row)):
        assert array.shape == (0,)
    fof_rows, fof_counts = store.friends_of_friends(row)
    assert fof_rows.shape == (0,) and fof_counts.shape == (0,)
    top_rows, top_strength = store.top_interactions(row, 10)
    assert top_rows.shape == (0,) and top_strength.shape == (0,)
    for answer in (store.interaction_partners(row), store.inbound_interactions(row)):
        assert all(a.shape == (0,) for a in answer)
    candidates = all_rows(store)
    assert not store.blocked_either(row, candidates).any()
    assert not store.muted(row, candidates).any()
    assert not store.friends_mask(row, candidates).any()
    assert store.strength(row, 0) == 0.0
    assert not store.is_friend(row, 0) and not store.is_blocked_either(row, 0)


class TestUnknownUsers:
    def test_unknown_id_has_row_minus_one(self) -> None:
        """Ids never seen map to row -1."""
        store = make_store()
        store.apply(ev(F, 1, 2))
        assert store.row(999) == -1
        assert store.ids.rows(np.array([1, 999, 2])).tolist() == [store.row(1), -1, store.row(2)]

    @pytest.mark.parametrize("compacted", [False, True], ids=["overlay", "compacted"])
    def test_queries_on_row_minus_one_are_empty(self, compacted: bool) -> None:
        """Every query answers row -1 with empty arrays, without raising."""
        store = make_store()
        store.apply_batch([ev(F, 1, 2), ev(F, 2, 1), ev(IA, 1, 2), ev(B, 1, 2), ev(M, 2, 1)])
        if compacted:
            store.compact()
        _assert_empty_answers(store, -1)

    def test_user_with_no_edges_has_empty_answers(self) -> None:
        """A known user without edges (profile only) answers empty."""
        store = make_store()
        store.apply_batch([ev(F, 1, 2), ev(K.PROFILE, 3, profile=Profile(3, age_band=AgeBand.ADULT))])
        store.compact()
        _assert_empty_answers(store, store.row(3))

    def test_empty_store(self) -> None:
        """A store with no users answers, compacts and counts without raising."""
        store = make_store()
        store.compact()
        assert store.following(-1).shape == (0,)
        assert store.friends_of_friends(0)[0].shape == (0,)
        stats = store.degree_stats()
        assert (stats.users, stats.follow_edges, stats.interaction_pairs) == (0, 0, 0)
        assert store.stored_edges() == 0


# ---------------------------------------------------------------------------------------
# Property tests against an oracle written from scratch.
# ---------------------------------------------------------------------------------------

PROP_HALF_LIFE = 300.0
PROP_USERS = 12
WEIGHTS = GraphConfig().weights
# "mutual" is two follows, a -> b then b -> a, so that friends are common.
PROP_KINDS: list[Any] = [F] * 3 + ["mutual"] * 2 + [UF, IA, IA, IA, B, UB, M, UM]


class Oracle:
    """The meaning of the events, from scratch: networkx for follows, sets
    for blocks and mutes, a dict of (strength at last update, last update
    second) per interaction pair."""

    def __init__(self, half_life: float) -> None:
        self.half_life = half_life
        self.follows = nx.DiGraph()
        self.blocks: set[tuple[int, int]] = set()
        self.mutes: set[tuple[int, int]] = set()
        self.inter: dict[tuple[int, int], tuple[float, int]] = {}
        self.seen: set[str] = set()
        self.erased: set[int] = set()
        self.seen_users: set[int] = set()

    def apply(self, e: Event) -> None:
        if e.event_id in self.seen:
            return
        self.seen.add(e.event_id)
        self.seen_users.update((e.actor, e.target))
        if e.actor in self.erased or e.target in self.erased:
            return
        a, b = e.actor, e.target
        if e.kind == F:
            self.follows.add_edge(a, b)
        elif e.kind == UF:
            if self.follows.has_edge(a, b):
                self.follows.remove_edge(a, b)
        elif e.kind == B:
            self.blocks.add((a, b))
        elif e.kind == UB:
            self.blocks.discard((a, b))
        elif e.kind == M:
            self.mutes.add((a, b))
        elif e.kind == UM:
            self.mutes.discard((a, b))
        elif e.kind == IA:
            w = WEIGHTS[InteractionType(e.detail)]
            t = math.floor(e.time)
            old = self.inter.get((a, b))
            if old is None:
                self.inter[(a, b)] = (w, t)
            elif t >= old[1]:
                self.inter[(a, b)] = (old[0] * 2 ** (-(t - old[1]) / self.half_life) + w, t)
            else:
                self.inter[(a, b)] = (old[0] + w * 2 ** (-(old[1] - t) / self.half_life), old[1])
        elif e.kind == K.ERASE_USER:
            self.erased.add(a)
            if a in self.follows:
                self.follows.remove_node(a)
            self.blocks = {p for p in self.blocks if a not in p}
            self.mutes = {p for p in self.mutes if a not in p}
            self.inter = {p: v for p, v in self.inter.items() if a not in p}

    # -- answers in external ids --------------------------------------------------------
    def following(self, u: int) -> list[int]:
        return sorted(self.follows.successors(u)) if u in self.follows else []

    def followers(self, u: int) -> list[int]:
        return sorted(self.follows.predecessors(u)) if u in self.follows else []

    def friend_graph(self) -> nx.Graph:
        return nx.Graph((a, b) for a, b in self.follows.edges if self.follows.has_edge(b, a))

    def friends_of_friends(self, friends: nx.Graph, u: int) -> dict[int, int]:
        if u not in friends:
            return {}
        mine = set(friends[u])
        counts: Counter[int] = Counter()
        for f in mine:
            counts.update(w for w in friends[f] if w != u and w not in mine)
        return dict(counts)

    def strengths(self, u: int, now: float) -> dict[int, float]:
        return {b: s * 2 ** (-(now - t) / self.half_life) for (a, b), (s, t) in self.inter.items() if a == u}

    def blocked_either(self, u: int) -> set[int]:
        return {b for a, b in self.blocks if a == u} | {a for a, b in self.blocks if b == u}

    def muted(self, u: int) -> set[int]:
        return {b for a, b in self.mutes if a == u}

    def stored_edges(self) -> int:
        return self.follows.number_of_edges() + len(self.blocks) + len(self.mutes) + len(self.inter)


def _answers(store: GraphStore, now: float) -> dict[tuple[str, int], tuple[np.ndarray, ...]]:
    """Every query the pipeline makes, for every row: the raw arrays."""
    out: dict[tuple[str, int], tuple[np.ndarray, ...]] = {}
    rows = all_rows(store)
    for r in range(store.n_rows):
        out[("following", r)] = (store.following(r),)
        out[("followers", r)] = (store.followers(r),)
        out[("friends", r)] = (store.friends_of(r),)
        out[("fof", r)] = store.friends_of_friends(r)
        out[("top", r)] = store.top_interactions(r, PROP_USERS, now)
        out[("partners", r)] = store.interaction_partners(r, now)
        out[("inbound", r)] = store.inbound_interactions(r, now)
        out[("blocked", r)] = (store.blocked_either(r, rows),)
        out[("muted", r)] = (store.muted(r, rows),)
    return out


def _assert_identical(before: dict[Any, tuple[np.ndarray, ...]], after: dict[Any, tuple[np.ndarray, ...]]) -> None:
    assert before.keys() == after.keys()
    for key, arrays in before.items():
        for x, y in zip(arrays, after[key], strict=True):
            assert x.dtype == y.dtype, key
            assert np.array_equal(x, y), (key, x, y)


def _check_against_oracle(store: GraphStore, oracle: Oracle, now: float) -> None:
    friends = oracle.friend_graph()
    ext = store.ids.ext
    candidates = all_rows(store)
    assert store.stored_edges() == oracle.stored_edges()
    # The bulk gather behind friends-of-friends (the safety rules call it
    # too) equals the friend lists read one by one, for any set of rows.
    lists = [store.friends_of(r) for r in range(store.n_rows)]
    for rows in (candidates, candidates[::-1], candidates[1::2]):
        want_all = np.concatenate([lists[r] for r in rows.tolist()] + [np.zeros(0, np.int32)])
        assert np.array_equal(np.sort(store.gather_friends(rows)), np.sort(want_all))
    for u in range(1, PROP_USERS + 1):
        r = store.row(u)
        if r < 0:
            assert u in oracle.erased or u not in oracle.seen_users
            _assert_empty_answers(store, r)
            continue
        for rows in (store.following(r), store.followers(r), store.friends_of(r)):
            assert np.all(np.diff(rows) > 0), "rows ascending, no repeats"
        assert sorted(ext(store.following(r)).tolist()) == oracle.following(u)
        assert sorted(ext(store.followers(r)).tolist()) == oracle.followers(u)
        assert set(ext(store.friends_of(r)).tolist()) == (set(friends[u]) if u in friends else set())
        fof_rows, fof_counts = store.friends_of_friends(r)
        assert np.all(np.diff(fof_rows) > 0)
        fof = dict(zip(ext(fof_rows).tolist(), fof_counts.tolist(), strict=True))
        assert fof == oracle.friends_of_friends(friends, u)
        assert set(ext(candidates[store.blocked_either(r, candidates)]).tolist()) == oracle.blocked_either(u)
        assert set(ext(candidates[store.muted(r, candidates)]).tolist()) == oracle.muted(u)

        want = oracle.strengths(u, now)
        top_rows, top_strength = store.top_interactions(r, PROP_USERS, now)
        got = dict(zip(ext(top_rows).tolist(), top_strength.tolist(), strict=True))
        assert got.keys() == want.keys()
        for b, s in want.items():
            assert got[b] == pytest.approx(s, rel=1e-5), (u, b)
        # Strongest first, ties by row, by the store's own numbers; and the
        # same order as the oracle's up to the float32 rounding.
        keys = list(zip((-top_strength).tolist(), top_rows.tolist(), strict=True))
        assert keys == sorted(keys)
        exts = ext(top_rows).tolist()
        for x, y in itertools.pairwise(exts):
            assert want[x] >= want[y] * (1 - 2e-5), (u, x, y)
        k = 3
        assert store.top_interactions(r, k, now)[0].tolist() == top_rows[:k].tolist()


@st.composite
def _event(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(PROP_KINDS * 6 + [K.ERASE_USER]))
    if kind == K.ERASE_USER:
        # Only some users are ever erased, so the others keep a rich graph.
        return (kind, draw(st.sampled_from([4, 8, 12])), 0, 0, 0.0, 0, 0)
    actor = draw(st.integers(1, PROP_USERS))
    target = (actor - 1 + draw(st.integers(1, PROP_USERS - 1))) % PROP_USERS + 1
    dt = draw(st.sampled_from([0, 0, 1, 7, 60, 299, 300, 900]))
    frac = draw(st.sampled_from([0.0, 0.5, 0.999]))
    detail = draw(st.sampled_from(list(WEIGHTS))) if kind == IA else 0
    late = draw(st.sampled_from([0, 0, 0, 1, 150, 600])) if kind == IA else 0
    return (kind, actor, target, dt, frac, int(detail), late)


# A step: ("events", [...]) applied through one apply_batch, ("compact",),
# ("retry",) which re-sends the previous batch unchanged, or ("freeze",):
# the first phase of a compaction alone, so that later reads and writes see
# several overlay layers, as they do while a background compaction runs.
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("events"), st.lists(_event(), min_size=1, max_size=60)),
        st.just(("compact",)),
        st.just(("retry",)),
        st.just(("freeze",)),
    ),
    min_size=1,
    max_size=12,
)
# A first batch that makes the graph dense enough for friends of friends.
_sequences = st.tuples(
    st.tuples(st.just("events"), st.lists(_event(), min_size=20, max_size=120)),
).flatmap(lambda first: _steps.map(lambda rest: [*first, *rest]))


def _run_steps(steps: Iterable[tuple[Any, ...]], *, check_compaction: bool) -> tuple[GraphStore, Oracle, float]:
    store = make_store(PROP_HALF_LIFE)
    oracle = Oracle(PROP_HALF_LIFE)
    t = T0
    last: list[Event] = []
    for step in steps:
        if step[0] == "events":
            batch = []
            for kind, actor, target, dt, frac, detail, late in step[1]:
                t += dt
                if kind == K.ERASE_USER:
                    batch.append(ev(kind, actor, time=t))
                elif kind == "mutual":
                    batch += [ev(F, actor, target, time=t), ev(F, target, actor, time=t)]
                else:
                    batch.append(ev(kind, actor, target, time=math.floor(t) + frac - late, detail=detail))
            last = batch
        elif step[0] == "retry":
            batch = last
        elif step[0] == "freeze":
            with store.lock:
                for name in ("follows", "friends", "blocks", "mutes", "interactions"):
                    getattr(store, name).freeze()
            continue
        else:
            if check_compaction:
                before = _answers(store, t)
                store.compact()
                _assert_identical(before, _answers(store, t))
            else:
                store.compact()
            continue
        expected_dupes = sum(e.event_id in oracle.seen for e in batch)
        result = store.apply_batch(batch)
        assert result.duplicates == expected_dupes
        for e in batch:
            oracle.apply(e)
    return store, oracle, t + 1.5


class TestAgainstOracle:
    @settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_sequences)
    def test_store_matches_oracle_before_and_after_compaction(self, steps: list[tuple[Any, ...]]) -> None:
        """Random follow/unfollow/interaction/block/mute sequences with
        compactions and retries: the store agrees with the oracle, and a
        compaction never changes any answer."""
        store, oracle, now = _run_steps(steps, check_compaction=True)
        _check_against_oracle(store, oracle, now)
        before = _answers(store, now)
        store.compact()
        assert store.overlay_size() == 0
        _assert_identical(before, _answers(store, now))
        _check_against_oracle(store, oracle, now)

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_sequences, st.integers(1, 25))
    def test_rebatching_gives_the_same_answers(self, steps: list[tuple[Any, ...]], size: int) -> None:
        """The same events cut into batches of another size (compactions
        dropped) give exactly the same answers."""
        events = [e for s in steps if s[0] == "events" for e in s[1]]
        one = _run_steps([("events", events)], check_compaction=False)[0] if events else make_store()
        other_steps = [("events", events[i:i + size]) for i in range(0, len(events), size)]
        other = _run_steps(other_steps, check_compaction=False)[0] if events else make_store()
        assert one.ids.all_ext().tolist() == other.ids.all_ext().tolist()
        now = T0 + 10**6
        _assert_identical(_answers(one, now), _answers(other, now))


class TestIdMap:
    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.integers(1, 2**63 - 1), unique=True, max_size=40),
        st.lists(st.integers(1, 2**63 - 1), max_size=40),
        st.lists(st.integers(1, 2**63 - 1), max_size=10),
    )
    def test_rows_round_trip(self, base: list[int], added: list[int], probes: list[int]) -> None:
        """ext(rows(x)) == x for every known id, before and after compacted();
        rows are dense, stable, and unknown ids give -1."""
        ids = IdMap(np.array(base, np.int64))
        rows_of_added = [ids.add(x) for x in added]
        known = list(dict.fromkeys(base + added))
        assert len(ids) == len(known)
        for mapping in (ids, ids.compacted()):
            rows = mapping.rows(np.array(known, np.int64))
            assert sorted(rows.tolist()) == list(range(len(known)))
            assert mapping.ext(rows).tolist() == known
            assert [mapping.row(x) for x in known] == rows.tolist()
            assert [mapping.row(x) for x in added] == rows_of_added
            unknown = [x for x in probes if x not in set(known)]
            assert mapping.rows(np.array(unknown, np.int64)).tolist() == [-1] * len(unknown)
            assert all(mapping.row(x) == -1 for x in unknown)
