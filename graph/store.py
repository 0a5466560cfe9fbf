"""The live graph: follows, friends, blocks, mutes, interactions, pair logs
and profiles over dense rows, with event application and the queries the
pipeline needs.

Size (over 400 lines): the live graph's one facade: event application and
the pipeline's queries share the store's lock, rows and overlays; the
structures themselves live in csr.py, relations.py, pairlog.py and
profiles.py.

Concurrency: one re-entrant lock serialises writers and guards the brief
moments readers copy overlay sets; base arrays are immutable and read
without it. Compaction (``compact``) folds overlays into new bases in the
calling thread (or ``start_compactor``'s) while readers and writers go on."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .clock import Clock, SystemClock
from .config import GraphConfig
from .csr import CSR, ROW
from .erasure import ErasureLedger
from .event_ids import EventIdSet, event_digests, split_batch
from .ids import IdMap
from .model import Event, EventKind
from .pairlog import PairLog
from .profiles import ProfileTable
from .relations import EdgeSet, WeightedEdges

log = logging.getLogger(__name__)

EDGE_SETS = ("follows", "friends", "blocks", "mutes")
_NO_HINTS = (None, None, None, None)
# The hot kinds as module globals: a global is quicker to read than an enum
# class attribute, and these are compared once per event.
_INTERACTION, _FOLLOW, _UNFOLLOW = EventKind.INTERACTION, EventKind.FOLLOW, EventKind.UNFOLLOW
PAIR_LOGS = ("reports", "dismissals", "unfollows", "unblocks")


@dataclass(frozen=True)
class BatchResult:
    applied: int
    duplicates: int
    watermark: int


@dataclass(frozen=True)
class DegreeStats:
    users: int
    follow_edges: int
    friend_pairs: int
    interaction_pairs: int
    max_out: int
    max_in: int
    mean_out: float
    p99_in: float


class GraphStore:
    def __init__(
        self,
        config: GraphConfig,
        clock: Clock,
        ids: IdMap,
        profiles: ProfileTable,
        edge_sets: dict[str, EdgeSet],
        interactions: WeightedEdges,
        pair_logs: dict[str, PairLog],
        lock: threading.RLock,
        *,
        watermark: int = 0,
        last_event_time: float = 0.0,
        ledger: ErasureLedger | None = None,
        seen_ids: EventIdSet | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.ids = ids
        self.profiles = profiles
        self.follows = edge_sets["follows"]
        self.friends = edge_sets["friends"]
        self.blocks = edge_sets["blocks"]
        self.mutes = edge_sets["mutes"]
        self.interactions = interactions
        self.reports = pair_logs["reports"]
        self.dismissals = pair_logs["dismissals"]
        self.unfollows = pair_logs["unfollows"]
        self.unblocks = pair_logs["unblocks"]
        self.lock = lock
        self.watermark = watermark
        self.last_event_time = last_event_time
        # Who was erased (keyed hashes, see graph.erasure): events naming
        # them are ignored and they never get a row again.
        self.ledger = ledger if ledger is not None else ErasureLedger()
        # Rows of erased users that still exist: erased here, or blanked
        # (negative ids) in a snapshot written from a live store. Checking
        # rows keeps hashing off the hot path: only an id seen for the
        # first time is looked up in the ledger.
        ext = ids.all_ext()
        self._erased_rows: set[int] = set(np.flatnonzero(ext < 0).tolist())
        if self.ledger.known:
            known = np.fromiter(self.ledger.known, np.int64, len(self.ledger.known))
            self._erased_rows.update(r for r in ids.rows(known).tolist() if r >= 0)
        # Ids of every event applied (snapshot and live): retries are no-ops.
        self._seen_ids = seen_ids if seen_ids is not None else EventIdSet()
        self._compactor: threading.Thread | None = None
        self._stop = threading.Event()

    # -- construction --------------------------------------------------
    @staticmethod
    def empty(config: GraphConfig | None = None, clock: Clock | None = None) -> GraphStore:
        config = config or GraphConfig()
        lock = threading.RLock()
        return GraphStore(
            config,
            clock or SystemClock(),
            IdMap(np.zeros(0, np.int64)),
            ProfileTable(n_rows=0),
            {
                name: EdgeSet(CSR.empty(0), CSR.empty(0) if name != "friends" else None, lock,
                              with_in=name != "friends")
                for name in EDGE_SETS
            },
            WeightedEdges(CSR.empty(0, {"strength": np.float32, "time": np.uint32}), CSR.empty(0), lock,
                          config.half_life_s),
            {name: PairLog() for name in PAIR_LOGS},
            lock,
        )

    @property
    def seen_ids(self) -> EventIdSet:
        """Ids of the events applied so far (read under ``lock``)."""
        return self._seen_ids

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    @property
    def erased(self) -> frozenset[int]:
        """Ids erased by this process, in the clear (memory only): enough to
        filter a raw event table this store was folded from. Whether any id
        was ever erased: ``is_erased``."""
        return self.ledger.known

    @property
    def erased_rows(self) -> frozenset[int]:
        """Rows that belonged to erased users."""
        with self.lock:
            return frozenset(self._erased_rows)

    def is_erased(self, ext: int) -> bool:
        row = self.ids.row(ext)
        if row >= 0 and row in self._erased_rows:
            return True
        return bool(self.ledger) and ext in self.ledger

    def erased_subset(self, ext: Iterable[int]) -> set[int]:
        """The erased users among ``ext`` (safe from any thread)."""
        with self.lock:
            return self.ledger.subset(ext)

    # -- writes --------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Apply one validated event; False if its id was applied before."""
        return self.apply_batch([event]).applied == 1

    def apply_batch(self, events: list[Event], *, deduplicated: bool = False,
                    digests: list[int] | None = None) -> BatchResult:
        """Apply validated events in order, atomically with respect to other
        writers and compaction. ``deduplicated``: the caller already left
        out every event whose id was applied before or repeats in the batch
        (the journal does, under a lock that keeps it true), so the ids are
        only recorded, not looked up again. ``digests``: the events' content
        digests (``event_digests``) if the caller has them.

        Raises EventIdConflict, applying nothing, if an event reuses an
        applied id (or one earlier in the batch) with other content."""
        applied = duplicates = 0
        if digests is None:
            digests = event_digests(events)
        with self.lock:
            fresh: list[Event]
            if deduplicated:
                fresh = events
            else:
                picked = split_batch(self._seen_ids, [event.event_id for event in events], digests)
                duplicates = len(events) - len(picked)
                if duplicates:
                    fresh = [events[i] for i in picked]
                    digests = [digests[i] for i in picked]
                else:
                    fresh = events
            if not fresh:
                return BatchResult(0, duplicates, self.watermark)
            a_rows, b_rows = self._rows_for(fresh)
            hints = self._base_hints(fresh, a_rows, b_rows)
            a_list = a_rows.tolist()
            b_list = b_rows.tolist()
            erased = self._erased_rows
            for i, event in enumerate(fresh):
                # Rows were looked up before the loop: an erase earlier in
                # this batch must still stop later events about that user.
                if a_list[i] >= 0 and not (erased and (a_list[i] in erased or b_list[i] in erased)):
                    self._apply_one(event, a_list[i], b_list[i], hints[i])
                applied += 1
            self._seen_ids.record([event.event_id for event in fresh], digests)
            self.watermark += applied
            self.last_event_time = max(self.last_event_time, max(e.time for e in fresh))
        return BatchResult(applied, duplicates, self.watermark)

    # Batches smaller than this look rows and base edges up one by one;
    # larger ones with vectorised searches over the whole batch.
    _VECTOR_FROM = 16

    def _base_hints(self, events: list[Event], a_rows: np.ndarray, b_rows: np.ndarray) -> list[Any]:
        """Per event, what the bases hold about its pair, found for the whole
        batch at once (the base cannot change while the batch holds the
        lock): for follow and unfollow ``(a->b follow, b->a follow, a->b
        friend, b->a friend)`` base memberships, for an interaction
        ``WeightedEdges.base_values``' hint; None where the relations must
        look for themselves (other kinds, small batches)."""
        n = len(events)
        hints: list[Any] = [None] * n
        if n < self._VECTOR_FROM:
            return hints
        kinds = np.fromiter((e.kind for e in events), np.int8, n)
        live = (a_rows >= 0) & (b_rows >= 0)
        idx = np.flatnonzero(((kinds == EventKind.FOLLOW) | (kinds == EventKind.UNFOLLOW)) & live)
        if idx.shape[0]:
            # Both directions in one search per set: a vectorised search
            # costs about the same for 25 pairs as for 50.
            m = idx.shape[0]
            there = np.concatenate([a_rows[idx], b_rows[idx]])
            back = np.concatenate([b_rows[idx], a_rows[idx]])
            follows = self.follows.base_contains(there, back).tolist()
            friends = self.friends.base_contains(there, back).tolist()
            found = zip(follows[:m], follows[m:], friends[:m], friends[m:], strict=True)
            for i, membership in zip(idx.tolist(), found, strict=True):
                hints[i] = membership
        idx = np.flatnonzero((kinds == EventKind.INTERACTION) & live)
        if idx.shape[0]:
            for i, hint in zip(idx.tolist(), self.interactions.base_values(a_rows[idx], b_rows[idx]), strict=True):
                hints[i] = hint
        return hints

    def _rows_for(self, events: list[Event]) -> tuple[np.ndarray, np.ndarray]:
        """Rows of actors and targets, creating users on first sight; actor
        row -1 for events that must not take effect (naming a user the
        ledger refuses a row); rows of erased users are left for the caller
        to check, since an erase may come later in the batch."""
        if len(events) < self._VECTOR_FROM:
            a_list: list[int] = []
            b_list: list[int] = []
            for e in events:
                a = self._row_or_new(e.actor)
                b = self._row_or_new(e.target) if e.target > 0 else -1
                a_list.append(-1 if e.target > 0 and b < 0 else a)
                b_list.append(b)
            return np.array(a_list, ROW), np.array(b_list, ROW)
        actors = np.fromiter((e.actor for e in events), np.int64, len(events))
        targets = np.fromiter((e.target for e in events), np.int64, len(events))
        a_rows = self.ids.rows(actors)
        b_rows = self.ids.rows(targets)
        for i in np.flatnonzero((a_rows < 0) | ((b_rows < 0) & (targets > 0))).tolist():
            a_rows[i] = self.ids.row(int(actors[i]))
            if a_rows[i] < 0:
                a_rows[i] = self._new_user(int(actors[i]))
            if targets[i] > 0 and b_rows[i] < 0:
                b_rows[i] = self.ids.row(int(targets[i]))
                if b_rows[i] < 0:
                    b_rows[i] = self._new_user(int(targets[i]))
        a_rows[(targets > 0) & (b_rows < 0)] = -1
        return a_rows, b_rows

    def _row_or_new(self, ext: int) -> int:
        row = self.ids.row(ext)
        return row if row >= 0 else self._new_user(ext)

    def _new_user(self, ext: int) -> int:
        # Ids are positive; 0 is the actor of a redacted WAL event.
        if ext <= 0 or (self.ledger and ext in self.ledger):
            return -1
        row = self.ids.add(ext)
        self.profiles.ensure_rows(row + 1)
        return row

    def _apply_one(self, e: Event, a: int, b: int, hint: Any = None) -> None:
        """``hint``: see ``_base_hints``."""
        kind = e.kind
        if kind == _INTERACTION:
            # weights is keyed by InteractionType, an IntEnum: the int detail
            # finds it without building the enum (weight_of), ~0.5 us saved
            # (and a cast() here would cost a call per event).
            weight = self.config.weights[e.detail]  # type: ignore[index]
            self.interactions.add(a, b, weight, math.floor(e.time), hint)
        elif kind == _FOLLOW:
            fwd, rev, f_ab, f_ba = hint or _NO_HINTS
            if self.follows.add(a, b, fwd) and self.follows.contains(b, a, rev):
                self.friends.add(a, b, f_ab)
                self.friends.add(b, a, f_ba)
        elif kind == _UNFOLLOW:
            fwd, rev, f_ab, f_ba = hint or _NO_HINTS
            if self.follows.remove(a, b, fwd):
                self.unfollows.record(a, b, e.time)
                if self.follows.contains(b, a, rev):
                    self.friends.remove(a, b, f_ab)
                    self.friends.remove(b, a, f_ba)
        elif kind == EventKind.BLOCK:
            self.blocks.add(a, b)
        elif kind == EventKind.UNBLOCK:
            if self.blocks.remove(a, b):
                self.unblocks.record(a, b, e.time)
        elif kind == EventKind.MUTE:
            self.mutes.add(a, b)
        elif kind == EventKind.UNMUTE:
            self.mutes.remove(a, b)
        elif kind == EventKind.REPORT:
            self.reports.record(a, b, e.time, e.detail)
        elif kind == EventKind.DISMISS:
            self.dismissals.record(a, b, e.time, e.detail)
        elif kind == EventKind.PROFILE:
            assert e.profile is not None
            self.profiles.update(a, e.profile)
        elif kind == EventKind.ERASE_USER:
            self._erase(a, e.actor)

    def _erase(self, row: int, ext: int) -> None:
        for relation in (self.follows, self.blocks, self.mutes):
            for b in relation.out(row).tolist():
                relation.remove(row, b)
            for s in relation.in_(row).tolist():
                relation.remove(s, row)
        for f in self.friends.out(row).tolist():
            self.friends.remove(row, f)
            self.friends.remove(f, row)
        for b in self.interactions.out(row)[0].tolist():
            self.interactions.delete(row, b)
        for s in self.interactions.in_(row)[0].tolist():
            self.interactions.delete(s, row)
        for pair_log in (self.reports, self.dismissals, self.unfollows, self.unblocks):
            pair_log.forget_user(row)
        self.profiles.clear(row)
        self._erased_rows.add(row)
        self.ledger.add(ext)

    # -- reads ---------------------------------------------------------
    def row(self, ext: int) -> int:
        """Row of an external id; -1 if unknown or erased."""
        row = self.ids.row(ext)
        return -1 if row >= 0 and row in self._erased_rows else row

    def following(self, row: int) -> np.ndarray:
        return self.follows.out(row)

    def followers(self, row: int) -> np.ndarray:
        return self.follows.in_(row)

    def friends_of(self, row: int) -> np.ndarray:
        return self.friends.out(row)

    def is_friend(self, a: int, b: int) -> bool:
        return self.friends.contains(a, b)

    def friends_mask(self, row: int, candidates: np.ndarray) -> np.ndarray:
        return np.isin(candidates, self.friends.out(row))

    def friends_of_friends(self, row: int, *, fanout: int | None = None,
                           pool: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows two friendship hops away and how many friends each shares
        with ``row`` (int32 rows ascending, int64 counts); the user and
        existing friends excluded. ``fanout`` / ``pool``: the caps of
        ``graph.bounds`` (at most ``fanout`` friends read through any one
        user, the viewer included; at most ``pool`` friend entries in all);
        then a count is over the friends read. None: no cap, exact."""
        friends = self.friends.out(row)
        if friends.shape[0] == 0:
            return np.zeros(0, ROW), np.zeros(0, np.int64)
        if fanout is None and pool is None:
            reach = self.gather_friends(friends)
        else:
            reach = self._bounded_friend_reach(friends, fanout, pool)
        if reach.shape[0] == 0:
            return np.zeros(0, ROW), np.zeros(0, np.int64)
        # Count by sorting in place (reach is a fresh array): what
        # np.unique(return_counts=True) does, without its extra copies.
        reach.sort()
        edge = np.empty(reach.shape[0] + 1, bool)
        edge[0] = edge[-1] = True
        np.not_equal(reach[1:], reach[:-1], out=edge[1:-1])
        first = np.flatnonzero(edge)
        rows = reach[first[:-1]]
        counts = np.diff(first)
        # Drop the user and his friends: one search per friend (hundreds)
        # instead of a membership test per candidate (tens of thousands).
        drop = np.append(friends, row)
        pos = np.minimum(np.searchsorted(rows, drop), rows.shape[0] - 1)
        keep = np.ones(rows.shape[0], bool)
        keep[pos[rows[pos] == drop]] = False
        return rows[keep], counts[keep]

    def _bounded_friend_reach(self, friends: np.ndarray, fanout: int | None, pool: int | None) -> np.ndarray:
        """The friend lists of ``friends`` under the caps: an evenly spaced
        sample of ``fanout`` of the viewer's friends, then of each hub's
        friends (friendships have no strength to choose by; a prefix would
        keep the oldest rows); seeds in a fixed pseudo-random order until
        ``pool`` entries are read. Lists read in full come from
        ``gather_friends`` (overlay included); a sampled list is the base's,
        or the merged one for a user the overlay touches."""
        seeds = _spread(friends, fanout) if fanout is not None and friends.shape[0] > fanout else friends
        base_out, _, layers = self.friends._state
        indptr = base_out.indptr
        in_base = seeds < base_out.n_rows
        safe = np.where(in_base, seeds, 0)
        starts = np.where(in_base, indptr[safe], 0).astype(np.int64)
        degree = np.where(in_base, indptr[np.minimum(safe + 1, base_out.n_rows)], 0).astype(np.int64) - starts
        want = degree if fanout is None else np.minimum(degree, fanout)
        if pool is not None:
            # Knuth's multiplicative hash: a fixed order not tied to age.
            order = np.argsort((seeds.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32), kind="stable")
            seeds, starts, degree, want = seeds[order], starts[order], degree[order], want[order]
            want = np.clip(pool - (np.cumsum(want) - want), 0, want)
        whole = want == degree
        part = ~whole & (want > 0)
        hubs, h_starts, h_degree, h_want = seeds[part], starts[part], degree[part], want[part]
        touched: set[int] = set()
        if hubs.shape[0] and any(layer.out_add or layer.out_rem for layer in layers):
            wanted = set(hubs.tolist())
            with self.lock:
                touched = set().union(*((layer.out_add.keys() & wanted) | (layer.out_rem.keys() & wanted)
                                        for layer in layers))
        parts = [self.gather_friends(seeds[whole])]
        if touched:
            clean = ~np.isin(hubs, np.fromiter(touched, np.int64, len(touched)))
            for hub, k in zip(hubs[~clean].tolist(), h_want[~clean].tolist(), strict=True):
                parts.append(_spread(self.friends.out(hub), k))
            hubs, h_starts, h_degree, h_want = hubs[clean], h_starts[clean], h_degree[clean], h_want[clean]
        if hubs.shape[0]:
            total = int(h_want.sum())
            within = np.arange(total) - np.repeat(np.cumsum(h_want) - h_want, h_want)
            picks = np.repeat(h_starts, h_want) + within * np.repeat(h_degree, h_want) // np.repeat(h_want, h_want)
            parts.append(base_out.indices[picks])
        return np.concatenate(parts).astype(ROW, copy=False)

    def gather_friends(self, rows: np.ndarray) -> np.ndarray:
        """Concatenated friend lists of many rows (a new int32 array, in no
        particular order): one vectorised CSR gather over the base for every
        row, then the overlay's net changes for the rows it touches, also
        applied in bulk (hubs are nearly always touched)."""
        base_out, _, layers = self.friends._state
        indptr = base_out.indptr
        in_base = (rows >= 0) & (rows < base_out.n_rows)
        safe = np.where(in_base, rows, 0)
        starts = np.where(in_base, indptr[safe], 0).astype(np.int64)
        lengths = np.where(in_base, indptr[np.minimum(safe + 1, base_out.n_rows)], 0).astype(np.int64) - starts
        seg = np.cumsum(lengths) - lengths  # where each row's list starts in the gather
        total = int(lengths.sum())
        reach = base_out.indices[np.repeat(starts - seg, lengths) + np.arange(total)] if total \
            else np.zeros(0, ROW)
        if not any(layer.out_add or layer.out_rem for layer in layers):
            return reach
        wanted = set(rows.tolist())
        removed: list[tuple[int, int, int]] = []  # (row, friend, occurrence index in rows)
        added: list[int] = []
        with self.lock:
            # keys() & set walks the smaller side: O(rows) per query, not
            # O(overlay).
            keys = set().union(*((layer.out_add.keys() & wanted) | (layer.out_rem.keys() & wanted)
                                 for layer in layers))
            if not keys:
                return reach
            net = {r: self._net_friend_change(layers, r) for r in keys}
        for i in np.flatnonzero(np.isin(rows, np.fromiter(keys, ROW, len(keys)))).tolist():
            r = int(rows[i])
            gone, new = net[r]
            removed.extend((r, f, i) for f in gone)
            added.extend(new)
        if removed:
            r_rows, r_friends, r_at = (np.array(c, np.int64) for c in zip(*removed, strict=True))
            pos = base_out.positions(r_rows, r_friends)  # in the base by construction
            ok = pos >= 0
            reach = np.delete(reach, (seg[r_at] + pos - starts[r_at])[ok])
        if added:
            reach = np.concatenate([reach, np.array(added, ROW)])
        return reach

    @staticmethod
    def _net_friend_change(layers: tuple[Any, ...], row: int) -> tuple[set[int], set[int]]:
        """The friends of ``row`` the layers remove from the base and those
        they add, net over all layers (bottom to top); caller holds the lock."""
        gone: set[int] = set()
        new: set[int] = set()
        for layer in layers:
            for f in layer.out_rem.get(row, ()):
                if f in new:
                    new.discard(f)
                else:
                    gone.add(f)
            for f in layer.out_add.get(row, ()):
                if f in gone:
                    gone.discard(f)
                else:
                    new.add(f)
        return gone, new

    def blocked_either(self, row: int, candidates: np.ndarray) -> np.ndarray:
        """Per candidate: did either side block the other? (bool)"""
        return np.isin(candidates, self.blocks.out(row)) | np.isin(candidates, self.blocks.in_(row))

    def is_blocked_either(self, a: int, b: int) -> bool:
        return self.blocks.contains(a, b) or self.blocks.contains(b, a)

    def muted(self, row: int, candidates: np.ndarray) -> np.ndarray:
        return np.isin(candidates, self.mutes.out(row))

    def interaction_partners(self, row: int, now: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Everyone ``row`` interacted with: (rows int32, decayed strength
        float64, last time uint32), sorted by row."""
        now = self.clock.now() if now is None else now
        rows, s, t = self.interactions.out(row)
        return rows, self.interactions.decay(s, t, now), t

    def inbound_interactions(self, row: int, now: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Everyone who interacted with ``row``: (rows, decayed strength, last time)."""
        now = self.clock.now() if now is None else now
        rows, s, t = self.interactions.in_(row)
        return rows, self.interactions.decay(s, t, now), t

    def top_interactions(self, row: int, k: int, now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k partners with the strongest decayed interaction from
        ``row``: (rows int32, strength float64), strongest first, ties by
        row."""
        rows, strength, _ = self.interaction_partners(row, now)
        order = np.lexsort((rows, -strength))[:k]
        return rows[order], strength[order]

    def strength(self, a: int, b: int, now: float | None = None) -> float:
        return self.interactions.strength(a, b, self.clock.now() if now is None else now)

    def degree_stats(self) -> DegreeStats:
        n = self.n_rows
        out_deg = self.follows.out_degrees(n)
        base_in = self.follows.base()[1]
        in_deg = np.zeros(n, np.int64)
        if base_in is not None:
            d = np.diff(base_in.indptr)
            in_deg[: d.shape[0]] = d[:n]
        return DegreeStats(
            users=n,
            follow_edges=int(out_deg.sum()),
            friend_pairs=self.friends.count() // 2,
            interaction_pairs=self.interactions.count(),
            max_out=int(out_deg.max()) if n else 0,
            max_in=int(in_deg.max()) if n else 0,
            mean_out=float(out_deg.mean()) if n else 0.0,
            p99_in=float(np.percentile(in_deg, 99)) if n else 0.0,
        )

    def _edge_sets(self) -> list[EdgeSet]:
        """The EDGE_SETS relations, in that order."""
        return [self.follows, self.friends, self.blocks, self.mutes]

    def nbytes(self) -> int:
        """Bytes held by the base arrays (edges, ids, profiles)."""
        return self.edge_bytes() + self.ids.nbytes() + self.profiles.nbytes()

    def edge_bytes(self) -> int:
        """Bytes of the edge structures only, every direction and weight."""
        return sum(s.nbytes() for s in self._edge_sets()) + self.interactions.nbytes()

    def stored_edges(self) -> int:
        """Follow, block, mute and interaction edges (friends are derived)."""
        return sum(s.count() for s in (self.follows, self.blocks, self.mutes)) + self.interactions.count()

    def overlay_size(self) -> int:
        return sum(s.overlay_size() for s in self._edge_sets()) + self.interactions.overlay_size()

    # -- compaction ----------------------------------------------------
    def compact(self) -> None:
        """Fold every overlay into new bases. Readers and writers continue
        meanwhile; the swap is one assignment per relation, under the lock."""
        relations: list[EdgeSet | WeightedEdges] = [getattr(self, name) for name in EDGE_SETS]
        relations.append(self.interactions)
        with self.lock:
            n_rows = self.n_rows
            for relation in relations:
                relation.freeze()
        merged = [relation.merged_base(n_rows) for relation in relations]
        new_ids = IdMap(self.ids.all_ext()[:n_rows].copy())
        with self.lock:
            for relation, (base, base_in) in zip(relations, merged, strict=True):
                relation.swap_base(base, base_in)  # type: ignore[arg-type]
            for row in range(n_rows, self.n_rows):
                new_ids.add(self.ids.ext_of(row))
            self.ids = new_ids

    def start_compactor(self, threshold: int = 200_000, interval_s: float = 5.0) -> None:
        """Compact in a background thread whenever the overlay passes
        ``threshold`` changed edges."""
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    if self.overlay_size() >= threshold:
                        self.compact()
                except Exception:  # a failed compaction must not kill serving
                    log.exception("background compaction failed; overlay kept")

        self._compactor = threading.Thread(target=loop, name="graph-compactor", daemon=True)
        self._compactor.start()

    def stop_compactor(self) -> None:
        self._stop.set()
        if self._compactor is not None:
            self._compactor.join(timeout=30)

    # -- safety queries (appended; read-only) ---------------------------
    def rows_of(self, ext: np.ndarray) -> np.ndarray:
        """``row`` for many external ids at once (int32; -1 for unknown or
        erased)."""
        rows = self.ids.rows(np.asarray(ext, np.int64))
        erased = self._erased_rows
        if erased:
            gone = np.fromiter((r in erased for r in rows.tolist()), bool, rows.shape[0])
            rows[gone] = -1
        return rows

    def accusation_bound(self, rows: np.ndarray) -> np.ndarray:
        """Per row, blocks in force against it plus the users who ever
        reported or unblocked it (int64): an upper bound on how many
        distinct users accuse it, whatever the window. Rows past the end
        count 0 blocks."""
        bound = self.blocks.in_degrees(rows)
        # The pair logs index their records by target; reading that index
        # here spares a numpy array per row (PairLog has no count query).
        for log in (self.reports, self.unblocks):
            by_target = log._by_target
            if by_target:
                get = by_target.get
                bound += np.fromiter((len(get(r, ())) for r in np.asarray(rows).tolist()), np.int64,
                                     bound.shape[0])
        return bound

    def accusation_bound_one(self, row: int) -> int:
        """``accusation_bound`` for one row."""
        return (self.blocks.in_degree(row) + len(self.reports._by_target.get(row, ()))
                + len(self.unblocks._by_target.get(row, ())))


def _spread(rows: np.ndarray, k: int) -> np.ndarray:
    """``k`` evenly spaced entries of ``rows`` (all of them if fewer)."""
    n = rows.shape[0]
    if n <= k:
        return rows
    picked: np.ndarray = rows[np.arange(k, dtype=np.int64) * n // k]
    return picked
