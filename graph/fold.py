"""Fold a whole event table into a GraphStore at once, vectorised: the
offline rebuild's path. Live serving applies events one at a time
(GraphStore.apply_batch); both give the same graph (a property test
checks)."""

from __future__ import annotations

import threading

import numpy as np

from . import arrays
from .clock import Clock
from .config import GraphConfig
from .erasure import ErasureLedger
from .event_ids import EventIdSet, content_digests, profile_code
from .ids import IdMap
from .model import EventKind
from .pairlog import PairLog
from .profiles import ProfileTable
from .relations import EdgeSet, WeightedEdges
from .store import GraphStore
from .table import EventTable


def dedupe(table: EventTable) -> np.ndarray:
    """Indices of rows to apply: the first of each non-empty event id."""
    return table.applied_rows()


def _pair_history(keys: np.ndarray, on: np.ndarray,
                  times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The on/off events of pairs (``keys`` in log order; ``on`` True for
    follow/block/mute, False for their undoing), sorted once by pair with
    log order kept within a pair. Returns (distinct keys, present bool:
    was the pair's last event an "on"), and the "off" events that removed
    an existing edge (the pair's previous event was an "on") as (keys,
    newest such time per key)."""
    sort = np.argsort(keys, kind="stable")
    k, o, t = keys[sort], on[sort], times[sort]
    last = np.ones(k.shape[0], bool)
    last[:-1] = k[1:] != k[:-1]
    effective = np.zeros(k.shape[0], bool)
    effective[1:] = (~o[1:]) & o[:-1] & ~last[:-1]
    off_k, off_t = k[effective], t[effective]
    if off_k.shape[0]:
        newest = np.lexsort((off_t, off_k))
        off_k, off_t = off_k[newest], off_t[newest]
        keep = np.ones(off_k.shape[0], bool)
        keep[:-1] = off_k[1:] != off_k[:-1]
        off_k, off_t = off_k[keep], off_t[keep]
    return k[last], o[last], off_k, off_t


def names_erased(actor: np.ndarray, target: np.ndarray, ledger: ErasureLedger) -> np.ndarray:
    """Per event, does it name an erased user (or is it a redacted WAL
    event, actor 0)? Only the distinct ids are looked up in the ledger."""
    redacted = actor <= 0
    if not ledger:
        return redacted
    named = arrays.unique(np.concatenate([actor, target[target > 0]]))
    dead = named[ledger.erased_among(named)]
    if dead.shape[0] == 0:
        return redacted
    return redacted | arrays.member(actor, dead) | ((target > 0) & arrays.member(target, dead))


def fold(table: EventTable, config: GraphConfig, clock: Clock, *, ledger: ErasureLedger | None = None) -> GraphStore:
    """The store the events of ``table`` make. ``ledger``: users erased
    before (an earlier snapshot's, or a ledger file): their events are
    dropped as if they were erased at the start, so older logs cannot bring
    them back. The store's ledger holds those and every user erased in the
    table; the ids of events naming an erased user are not remembered
    (clients may have put user ids in them)."""
    keep = dedupe(table)
    kind = table.kind[keep]
    actor = table.actor[keep]
    target = table.target[keep]
    time = table.time[keep]
    detail = table.detail[keep]
    ledger = ledger.copy() if ledger is not None else ErasureLedger()
    ledger.add_many(actor[(kind == EventKind.ERASE_USER) & (actor > 0)])
    alive = ~names_erased(actor, target, ledger)
    users = arrays.unique(np.concatenate([actor[alive], target[alive & (target > 0)]]))
    ids = IdMap(users)
    n = len(ids)
    a = np.where(alive, ids.rows(actor), -1).astype(np.int64)
    b = np.where(alive & (target > 0), ids.rows(target), -1).astype(np.int64)
    key = a * max(n, 1) + b
    lock = threading.RLock()

    def pairs(on_kind: EventKind, off_kind: EventKind) -> tuple[np.ndarray, np.ndarray, PairLog]:
        sel = alive & ((kind == on_kind) | (kind == off_kind))
        present_keys, present, off_keys, off_times = _pair_history(key[sel], kind[sel] == on_kind, time[sel])
        edges = present_keys[present]
        offs = PairLog()
        for k, t in zip(off_keys.tolist(), off_times.tolist(), strict=True):
            offs.record(k // n, k % n, t)
        return edges // max(n, 1), edges % max(n, 1), offs

    f_src, f_dst, unfollows = pairs(EventKind.FOLLOW, EventKind.UNFOLLOW)
    b_src, b_dst, unblocks = pairs(EventKind.BLOCK, EventKind.UNBLOCK)
    m_src, m_dst, _ = pairs(EventKind.MUTE, EventKind.UNMUTE)
    fkeys = f_src * n + f_dst
    mutual = arrays.isin(fkeys, f_dst * n + f_src)
    follows = EdgeSet.build(f_src, f_dst, n, lock, with_in=True)
    friends = EdgeSet(
        EdgeSet.build(f_src[mutual], f_dst[mutual], n, lock, with_in=False).base()[0], None, lock, with_in=False)

    sel = alive & (kind == EventKind.INTERACTION)
    ikeys = key[sel]
    itime = np.floor(time[sel]).astype(np.int64)
    weights = np.zeros(int(detail.max(initial=0)) + 1, np.float64)
    for t, w in config.weights.items():
        if int(t) < weights.shape[0]:
            weights[int(t)] = w
    iweight = weights[detail[sel].astype(np.int64)]
    uniq, inverse = np.unique(ikeys, return_inverse=True)
    last = np.full(uniq.shape[0], np.iinfo(np.int64).min, np.int64)
    np.maximum.at(last, inverse, itime)
    strength = np.bincount(inverse, weights=iweight * np.exp2(-(last[inverse] - itime) / config.half_life_s),
                           minlength=uniq.shape[0])
    interactions = WeightedEdges.build(uniq // max(n, 1), uniq % max(n, 1), strength, last, n, lock,
                                       config.half_life_s)

    logs: dict[str, PairLog] = {"unfollows": unfollows, "unblocks": unblocks}
    for name, k in (("reports", EventKind.REPORT), ("dismissals", EventKind.DISMISS)):
        pair_log = PairLog()
        sel = np.flatnonzero(alive & (kind == k))
        for i in sel.tolist():
            pair_log.record(int(a[i]), int(b[i]), float(time[i]), int(detail[i]))
        logs[name] = pair_log

    profiles = ProfileTable(n_rows=n)
    applied = [table.profiles[i] for i in keep_profile_rows(table, keep, alive)]
    rows = ids.rows(np.fromiter((p.user_id for p in applied), np.int64, len(applied))).tolist()
    for row, profile in zip(rows, applied, strict=True):
        profiles.update(row, profile)

    store = GraphStore(
        config, clock, ids, profiles,
        {"follows": follows, "friends": friends,
         "blocks": EdgeSet.build(b_src, b_dst, n, lock, with_in=True),
         "mutes": EdgeSet.build(m_src, m_dst, n, lock, with_in=True)},
        interactions, logs, lock,
        watermark=int(keep.shape[0]),
        last_event_time=float(time.max(initial=0.0)),
        ledger=ledger,
        # Remembered, so that a live retry or a later rebuild fed the same
        # events counts them as duplicates.
        seen_ids=_seen_ids(table, keep[alive]),
    )
    return store


def _seen_ids(table: EventTable, rows: np.ndarray) -> EventIdSet:
    """The ids of ``rows`` (int64 row numbers of ``table``) with the digests
    of their events' content, as the live path keeps them."""
    detail = table.detail[rows].astype(np.int64)
    kind = table.kind[rows]
    for k in np.flatnonzero(kind == EventKind.PROFILE).tolist():
        detail[k] = profile_code(table.profiles.get(int(rows[k])))
    digests = content_digests(kind, table.actor[rows], table.target[rows], detail)
    return EventIdSet.from_ids(table.event_id[rows], digests)


def keep_profile_rows(table: EventTable, keep: np.ndarray, alive: np.ndarray) -> list[int]:
    """Original row numbers of profile events to apply, in log order."""
    applied = keep[alive & (table.kind[keep] == EventKind.PROFILE)]
    return [int(i) for i in applied.tolist() if int(i) in table.profiles]


__all__ = ["dedupe", "fold", "names_erased"]
