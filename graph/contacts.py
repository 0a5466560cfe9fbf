"""The contact graph: who is in touch with whom, both directions of every
pair side by side, with interaction strength each way at two half-lives.

Built offline from the event table (the store keeps one half-life only) as
of one moment, and read by the candidate sources and the ranking features:
the 2-hop neighbourhood of a user (weighted Adamic–Adar over messages *and*
follows, since some networks have no follows at all) and the pair and node
statistics the learned ranker uses.

Size (over 400 lines): one structure, built once and read by the sources and
the ranking features; the bounded neighbour lists of ``graph.bounds`` are part
of its reads, so they live with it.

Arrays (``n`` users, ``m`` directed entries; each undirected pair is stored
once from each side, rows sorted within a row):

- ``indptr``: int64 (n + 1,); ``indices``: int32 (m,) neighbour rows.
- ``out_s``, ``in_s``: float32 (m, 2): decayed strength from the row to the
  neighbour and back, at the short and the long half-life.
- ``out_n``, ``in_n``: float32 (m,): interaction counts each way.
- ``last``: float64 (m,): newest interaction time either way (0 if none).
- ``last_in``: float64 (m,): newest interaction from the neighbour to the row.
- ``follow``: uint8 (m,): bit 1 the row follows the neighbour, bit 2 back.
- ``weight``: float32 (m,): the tie weight 2-hop scores use.
Per node (n,): ``degree`` int32, ``weight_sum`` float32, ``out_partners``,
``in_partners``, ``answered`` int32 (out-partners who wrote back),
``last_active`` float64 (newest interaction either way, 0 if none),
``out_short``, ``in_short`` float32 (short-half-life strength sent and
received in all)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import unique as sorted_unique
from .bounds import Bounds
from .config import GraphConfig
from .fold import dedupe
from .model import EventKind
from .store import GraphStore
from .table import EventTable

DAY = 86_400.0
_WALK_FLOOR = 0.1


@dataclass(frozen=True)
class ContactConfig:
    short_half_life_s: float = 7 * DAY
    long_half_life_s: float = 90 * DAY
    follow_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.short_half_life_s <= 0 or self.long_half_life_s <= 0:
            raise ValueError("half-lives must be positive")


_EDGE_ARRAYS = ("indices", "out_s", "in_s", "out_n", "in_n", "last", "last_in", "follow", "weight")
_NODE_ARRAYS = ("degree", "weight_sum", "out_partners", "in_partners", "answered", "last_active", "out_short",
                "in_short")


@dataclass(frozen=True)
class TwoHop:
    """2-hop reach of one viewer: ``rows`` int32 ascending (the viewer
    excluded, direct neighbours included), ``common`` float64 common
    neighbours, ``aa`` Adamic–Adar, ``waa`` strength-weighted Adamic–Adar."""

    rows: np.ndarray
    common: np.ndarray
    aa: np.ndarray
    waa: np.ndarray

    def lookup(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(common, aa, waa) for each candidate row; 0 where not reached."""
        cols = [np.zeros(candidates.shape[0], np.float64) for _ in range(3)]
        n = self.rows.shape[0]
        if n == 0:
            return cols[0], cols[1], cols[2]
        pos = np.minimum(np.searchsorted(self.rows, candidates), n - 1)
        hit = self.rows[pos] == candidates
        for col, values in zip(cols, (self.common, self.aa, self.waa), strict=True):
            col[hit] = values[pos[hit]]
        return cols[0], cols[1], cols[2]


class ContactGraph:
    indptr: np.ndarray
    indices: np.ndarray
    out_s: np.ndarray
    in_s: np.ndarray
    out_n: np.ndarray
    in_n: np.ndarray
    last: np.ndarray
    last_in: np.ndarray
    follow: np.ndarray
    weight: np.ndarray
    degree: np.ndarray
    weight_sum: np.ndarray
    out_partners: np.ndarray
    in_partners: np.ndarray
    answered: np.ndarray
    last_active: np.ndarray
    out_short: np.ndarray
    in_short: np.ndarray

    def __init__(self, arrays: dict[str, np.ndarray], as_of: float, config: ContactConfig,
                 bounds: Bounds | None = None) -> None:
        self.as_of = float(as_of)
        self.config = config
        # Caps on the 2-hop reach and the walk (see ``graph.bounds``): a
        # serving setting, not part of the snapshot.
        self.bounds = bounds or Bounds()
        # Per hub_fanout: (hub index per row, -1 for none; the hubs'
        # strongest entries, (n_hubs, fanout) int64 offsets). Built on
        # first use, replaced by a single assignment.
        self._hubs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # The last viewer's 2-hop reach and walk: a request asks for both
        # twice (the sources, then the ranker's features). One slot, replaced
        # by a single assignment, so concurrent readers see a whole entry.
        self._memo: tuple[int, TwoHop | None, tuple[np.ndarray, np.ndarray] | None] = (-1, None, None)
        self.indptr = arrays["indptr"]
        for name in _EDGE_ARRAYS + _NODE_ARRAYS:
            setattr(self, name, arrays[name])

    @property
    def n_rows(self) -> int:
        return int(self.indptr.shape[0]) - 1

    # -- construction --------------------------------------------------
    @staticmethod
    def build(table: EventTable, store: GraphStore, as_of: float,
              config: ContactConfig | None = None) -> ContactGraph:
        """From the events in ``table`` up to ``as_of`` (interactions) and
        the store's follow edges; rows are the store's. Duplicated event
        ids count once; events of users the store does not know (erased)
        are ignored."""
        config = config or ContactConfig()
        n = store.n_rows
        keep = dedupe(table)
        kind = table.kind[keep]
        sel = keep[(kind == EventKind.INTERACTION) & (table.time[keep] <= as_of)]
        a = store.ids.rows(table.actor[sel]).astype(np.int64)
        b = store.ids.rows(table.target[sel]).astype(np.int64)
        t = table.time[sel]
        w = _weights(store.config, table.detail[sel])
        ok = (a >= 0) & (b >= 0) & (a != b)
        if store.erased:
            erased = np.fromiter(store.erased, np.int64, len(store.erased))
            ok &= ~np.isin(table.actor[sel], erased) & ~np.isin(table.target[sel], erased)
        a, b, t, w = a[ok], b[ok], t[ok], w[ok]
        age = np.maximum(as_of - t, 0.0)
        s_short = w * np.exp2(-age / config.short_half_life_s)
        s_long = w * np.exp2(-age / config.long_half_life_s)
        # Directed pair statistics.
        uniq, inv = np.unique(a * n + b, return_inverse=True)
        d_short = np.bincount(inv, s_short, uniq.shape[0])
        d_long = np.bincount(inv, s_long, uniq.shape[0])
        d_count = np.bincount(inv, None, uniq.shape[0]).astype(np.float64)
        d_last = np.zeros(uniq.shape[0])
        np.maximum.at(d_last, inv, t)
        f_out, _ = store.follows.base()
        fs, fd = f_out.edges()
        f_key = sorted_unique(fs.astype(np.int64) * n + fd)
        # Every directed pair (interaction or follow) is one entry on its
        # source's side ("out") and one on its target's side ("in"): a single
        # sort of all of them groups each undirected pair's facts together.
        i_src, i_dst = uniq // max(n, 1), uniq % max(n, 1)
        f_src, f_dst = f_key // max(n, 1), f_key % max(n, 1)
        records = np.concatenate([uniq, i_dst * n + i_src, f_key, f_dst * n + f_src])
        ent, where = np.unique(records, return_inverse=True)
        m_int, m_f = uniq.shape[0], f_key.shape[0]
        as_out, as_in = where[:m_int], where[m_int:2 * m_int]
        f_out_at, f_in_at = where[2 * m_int:2 * m_int + m_f], where[2 * m_int + m_f:]
        del records, where
        m = ent.shape[0]
        rows, cols = ent // max(n, 1), ent % max(n, 1)
        del ent
        out_s = np.zeros((m, 2), np.float32)
        in_s = np.zeros((m, 2), np.float32)
        out_s[as_out, 0], out_s[as_out, 1] = d_short, d_long
        in_s[as_in, 0], in_s[as_in, 1] = d_short, d_long
        out_n = np.zeros(m, np.float32)
        in_n = np.zeros(m, np.float32)
        out_n[as_out] = d_count
        in_n[as_in] = d_count
        last_in = np.zeros(m)
        last_in[as_in] = d_last
        last = last_in.copy()
        np.maximum.at(last, as_out, d_last)
        follow = np.zeros(m, np.uint8)
        follow[f_out_at] |= 1
        follow[f_in_at] |= 2
        weight = (np.log1p(out_s[:, 1].astype(np.float64) + in_s[:, 1])
                  + config.follow_weight * ((follow & 1) + ((follow >> 1) & 1)) / 2.0).astype(np.float32)
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n)[:n], out=indptr[1:])
        degree = np.diff(indptr).astype(np.int32)
        row_ids = rows.astype(np.int64)
        arrays: dict[str, np.ndarray] = {
            "indptr": indptr, "indices": cols.astype(np.int32), "out_s": out_s, "in_s": in_s,
            "out_n": out_n, "in_n": in_n, "last": last, "last_in": last_in, "follow": follow,
            "weight": weight, "degree": degree,
            "weight_sum": np.bincount(row_ids, weight.astype(np.float64), n).astype(np.float32),
            "out_partners": np.bincount(row_ids, out_n > 0, n).astype(np.int32),
            "in_partners": np.bincount(row_ids, in_n > 0, n).astype(np.int32),
            "answered": np.bincount(row_ids, (out_n > 0) & (in_n > 0), n).astype(np.int32),
            "last_active": _group_max(row_ids, last, n),
            "out_short": np.bincount(row_ids, out_s[:, 0].astype(np.float64), n).astype(np.float32),
            "in_short": np.bincount(row_ids, in_s[:, 0].astype(np.float64), n).astype(np.float32),
        }
        return ContactGraph(arrays, as_of, config)

    def with_bounds(self, bounds: Bounds) -> ContactGraph:
        """The same arrays (shared, not copied) read under other caps."""
        arrays = {name: getattr(self, name) for name in ("indptr", *_EDGE_ARRAYS, *_NODE_ARRAYS)}
        return ContactGraph(arrays, self.as_of, self.config, bounds)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ("indptr", *_EDGE_ARRAYS, *_NODE_ARRAYS)}

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], as_of: float, config: ContactConfig,
                    bounds: Bounds | None = None) -> ContactGraph:
        return ContactGraph(arrays, as_of, config, bounds)

    # -- queries -------------------------------------------------------
    def span(self, row: int) -> tuple[int, int]:
        if row < 0 or row >= self.n_rows:
            return 0, 0
        return int(self.indptr[row]), int(self.indptr[row + 1])

    def neighbours(self, row: int) -> np.ndarray:
        start, end = self.span(row)
        return self.indices[start:end]

    def pair_positions(self, row: int, candidates: np.ndarray) -> np.ndarray:
        """Entry offset of (row, candidate) per candidate, -1 if not in touch."""
        start, end = self.span(row)
        if start == end:
            return np.full(candidates.shape[0], -1, np.int64)
        nbrs = self.indices[start:end]
        pos = np.minimum(np.searchsorted(nbrs, candidates), end - start - 1)
        return np.where(nbrs[pos] == candidates, start + pos, -1)

    def two_hop(self, row: int) -> TwoHop:
        """``_two_hop`` of the row, remembered for the next call."""
        memo_row, hop, walked = self._memo
        if memo_row == row and hop is not None:
            return hop
        hop = self._two_hop(row)
        self._memo = (row, hop, walked if memo_row == row else None)
        return hop

    def walk(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """``_walk`` of the row with the default parameters, remembered."""
        memo_row, hop, walked = self._memo
        if memo_row == row and walked is not None:
            return walked
        walked = self._walk(row)
        self._memo = (row, hop if memo_row == row else None, walked)
        return walked

    def recent_walk(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The walk along recent ties (short half-life); not remembered."""
        return self._walk(row, recent=True)

    def hub_ties(self, fanout: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``fanout`` strongest entries of every row with more ties than
        that: (hub index per row int32, -1 for a row that is no hub;
        offsets int64 (n_hubs, fanout), strongest first, ties to the lower
        offset). Built once per fanout (a sort of the hubs' entries)."""
        cached = self._hubs.get(fanout)
        if cached is not None:
            return cached
        hubs = np.flatnonzero(self.degree > fanout)
        index = np.full(self.n_rows, -1, np.int32)
        index[hubs] = np.arange(hubs.shape[0], dtype=np.int32)
        starts = self.indptr[hubs]
        lengths = self.indptr[hubs + 1] - starts
        offsets = _ranges(starts, lengths)
        owner = np.repeat(np.arange(hubs.shape[0]), lengths)
        order = np.lexsort((offsets, -self.weight[offsets], owner))
        rank = np.arange(offsets.shape[0]) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        top = offsets[order][rank < fanout].reshape(hubs.shape[0], fanout)
        self._hubs = {**self._hubs, fanout: (index, top)}
        return index, top

    def expand(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The entries read when expanding ``nodes`` (int64, most important
        first) under ``bounds``: (offsets int64, owner int64: index into
        ``nodes`` of each entry's node). A hub gives its ``hub_fanout``
        strongest entries; once ``source_pool`` entries are read the rest
        of the nodes give none (the last one is cut short). Without caps:
        every entry of every node, node by node."""
        fanout, pool = self.bounds.hub_fanout, self.bounds.source_pool
        starts = self.indptr[nodes]
        degree = self.indptr[nodes + 1] - starts
        lengths = degree if fanout is None else np.minimum(degree, fanout)
        if pool is not None:
            before = np.cumsum(lengths) - lengths
            lengths = np.clip(pool - before, 0, lengths)
        owner = np.repeat(np.arange(nodes.shape[0], dtype=np.int64), lengths)
        offsets = _ranges(starts, lengths)
        if fanout is not None and bool((degree > fanout).any()):
            index, top = self.hub_ties(fanout)
            hub = index[nodes] >= 0
            at_hub = hub[owner]
            # A hub's k-th entry read is its k-th strongest tie.
            k = offsets[at_hub] - starts[owner[at_hub]]
            offsets[at_hub] = top[index[nodes[owner[at_hub]]], k]
        return offsets, owner

    def _two_hop(self, row: int) -> TwoHop:
        """Everyone two hops from ``row`` with common-neighbour, Adamic–Adar
        and strength-weighted Adamic–Adar scores. A neighbour with many
        contacts contributes little to Adamic–Adar and costs much: under
        ``bounds`` the viewer's strongest ties are read first and each hub
        gives only its strongest ties (``expand``); Adamic–Adar still
        divides by the hub's full degree."""
        start, end = self.span(row)
        if start == end:
            empty = np.zeros(0)
            return TwoHop(np.zeros(0, np.int32), empty, empty, empty)
        first, _ = self.expand(np.array([row], np.int64))
        if self.bounds.source_pool is not None:
            # The pool is cut after the strongest ties (uncapped, the order
            # only changes the sums' rounding: keep the row order then).
            first = first[np.lexsort((first, -self.weight[first]))]
        nbrs = self.indices[first].astype(np.int64)
        w_uz = self.weight[first].astype(np.float64)
        offsets, owner = self.expand(nbrs)
        reach = self.indices[offsets]
        w_zv = self.weight[offsets].astype(np.float64)
        deg = self.degree[nbrs].astype(np.float64)
        inv_log_deg = (1.0 / np.log(np.maximum(deg, 2.0)))[owner]
        inv_log_sum = (1.0 / np.log(2.0 + self.weight_sum[nbrs].astype(np.float64)))[owner]
        w_rep = w_uz[owner]
        keep = reach != row
        reach, w_zv, inv_log_deg, inv_log_sum, w_rep = (
            reach[keep], w_zv[keep], inv_log_deg[keep], inv_log_sum[keep], w_rep[keep])
        rows, inv = np.unique(reach, return_inverse=True)
        size = rows.shape[0]
        return TwoHop(
            rows.astype(np.int32),
            np.bincount(inv, None, size).astype(np.float64),
            np.bincount(inv, inv_log_deg, size),
            np.bincount(inv, np.sqrt(w_rep * w_zv) * inv_log_sum, size),
        )

    def _walk(self, row: int, steps: int = 3, alpha: float = 0.85, keep: int = 5000,
              recent: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A truncated personalised PageRank from ``row``: the mass a walk
        that continues with probability ``alpha`` puts on each user within
        ``steps`` hops, moving along ties in proportion to their weight
        (plus a floor, so an old tie still leads somewhere). Each step keeps
        the ``keep`` heaviest users and reads their ties under ``bounds``
        (``expand``, the heaviest users first; a hub's mass goes to its
        strongest ties only). Returns (rows int32 ascending, scores
        float64); the viewer excluded. With ``recent`` a tie weighs by its
        short-half-life strength instead (a hub's ties are still the
        strongest by the long one)."""
        nodes = np.array([row], np.int64)
        mass = np.array([1.0])
        found: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        if not 0 <= row < self.n_rows:
            return np.zeros(0, np.int32), np.zeros(0)
        for _ in range(steps):
            if self.bounds.source_pool is not None:  # cut the pool after the heaviest
                heavy = np.lexsort((nodes, -mass))
                nodes, mass = nodes[heavy], mass[heavy]
            offsets, owner = self.expand(nodes)
            if offsets.shape[0] == 0:
                break
            if recent:
                w = np.log1p(self.out_s[offsets, 0].astype(np.float64) + self.in_s[offsets, 0]) + _WALK_FLOOR
            else:
                w = self.weight[offsets].astype(np.float64) + _WALK_FLOOR
            out_sum = np.bincount(owner, w, nodes.shape[0])
            step_mass = (mass / np.maximum(out_sum, 1e-12))[owner] * w * alpha
            nodes, inv = np.unique(self.indices[offsets].astype(np.int64), return_inverse=True)
            mass = np.bincount(inv, step_mass, nodes.shape[0])
            if nodes.shape[0] > keep:
                top = np.sort(np.argpartition(-mass, keep)[:keep])
                nodes, mass = nodes[top], mass[top]
            found.append(nodes)
            scores.append(mass)
        if not found:
            return np.zeros(0, np.int32), np.zeros(0)
        rows, inv = np.unique(np.concatenate(found), return_inverse=True)
        total_mass = np.bincount(inv, np.concatenate(scores), rows.shape[0])
        keep_rows = rows != row
        return rows[keep_rows].astype(np.int32), total_mass[keep_rows]

    def unanswered_inbound(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """People who interacted with ``row`` and never got an answer:
        (rows int32, long-half-life strength float64, newest inbound time
        float64), by row."""
        start, end = self.span(row)
        sel = (self.in_n[start:end] > 0) & (self.out_n[start:end] == 0)
        return (self.indices[start:end][sel], self.in_s[start:end, 1][sel].astype(np.float64),
                self.last_in[start:end][sel])


def _weights(config: GraphConfig, detail: np.ndarray) -> np.ndarray:
    table = np.zeros(int(detail.max(initial=0)) + 1, np.float64)
    for t, w in config.weights.items():
        if int(t) < table.shape[0]:
            table[int(t)] = w
    return table[detail.astype(np.int64)]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` per pair (int64)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    return (np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)).astype(np.int64)


def _group_max(groups: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, np.float64)
    np.maximum.at(out, groups, values)
    return out
