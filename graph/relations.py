"""Relations between user rows: an immutable CSR base plus a stack of
mutable overlay layers.

Size (over 400 lines): one data structure, the CSR base with its overlay
layers; reads, writes and compaction share the layer invariants below.

Writers change only the top layer (under the store's lock). Compaction
freezes the layers below a fresh top layer, folds them into a new base
without holding the lock, then swaps ``(new base, [top])`` in with one
assignment. Readers take the state tuple once per query, so they see either
the old or the new base with the matching layers, never a mix.

Layer semantics, relative to everything below it: ``add[a]`` holds targets
absent below and present now; ``rem[a]`` targets present below and absent
now. Rows are returned sorted, so answers do not depend on where an edge
lives."""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field

import numpy as np

from .csr import CSR, ROW, from_pairs, sources_of, transpose, transpose_positions

_F32 = struct.Struct("<f")


def to_f32(x: float) -> float:
    """Round to float32 so the overlay and the base (float32 column) agree
    to the bit."""
    rounded: float = _F32.unpack(_F32.pack(x))[0]
    return rounded


def _as_rows(values: set[int] | list[int]) -> np.ndarray:
    return np.fromiter(values, ROW, len(values))


@dataclass
class _EdgeLayer:
    out_add: dict[int, set[int]] = field(default_factory=dict)
    out_rem: dict[int, set[int]] = field(default_factory=dict)
    in_add: dict[int, set[int]] = field(default_factory=dict)
    in_rem: dict[int, set[int]] = field(default_factory=dict)

    def touches_out(self, a: int) -> bool:
        return a in self.out_add or a in self.out_rem

    def touches_in(self, b: int) -> bool:
        return b in self.in_add or b in self.in_rem

    def size(self) -> int:
        return sum(map(len, self.out_add.values())) + sum(map(len, self.out_rem.values()))


def _set_add(d: dict[int, set[int]], k: int, v: int) -> None:
    s = d.get(k)
    if s is None:
        d[k] = {v}
    else:
        s.add(v)


def _set_discard(d: dict[int, set[int]], k: int, v: int) -> bool:
    s = d.get(k)
    if s is None or v not in s:
        return False
    s.discard(v)
    if not s:
        del d[k]
    return True


def _apply_layer_row(row: np.ndarray, rem: set[int] | None, add: set[int] | None) -> np.ndarray:
    if rem:
        row = row[~np.isin(row, _as_rows(rem))]
    if add:
        row = np.concatenate([row, _as_rows(add)])
    return row


class EdgeSet:
    """A set of directed edges between rows; with ``with_in`` the reverse
    direction is kept too (followers, who blocked me)."""

    def __init__(self, base_out: CSR, base_in: CSR | None, lock: threading.RLock, *, with_in: bool) -> None:
        self.with_in = with_in
        self._lock = lock
        self._state: tuple[CSR, CSR | None, tuple[_EdgeLayer, ...]] = (base_out, base_in, (_EdgeLayer(),))

    @staticmethod
    def build(src: np.ndarray, dst: np.ndarray, n_rows: int, lock: threading.RLock, *, with_in: bool) -> EdgeSet:
        out = from_pairs(src, dst, n_rows)
        return EdgeSet(out, transpose(out, n_rows) if with_in else None, lock, with_in=with_in)

    # -- reads ---------------------------------------------------------
    def contains(self, a: int, b: int, in_base: bool | None = None) -> bool:
        base_out, _, layers = self._state
        for layer in reversed(layers):
            s = layer.out_add.get(a)
            if s is not None and b in s:
                return True
            s = layer.out_rem.get(a)
            if s is not None and b in s:
                return False
        if in_base is not None:
            return in_base
        return base_out.contains(a, b)

    def base_contains(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Vectorised membership in the base only (bool per pair)."""
        return self._state[0].positions(a, b) >= 0

    def out(self, a: int) -> np.ndarray:
        """Targets of row ``a``, sorted int32."""
        base_out, _, layers = self._state
        row = base_out.row(a)
        if not any(layer.touches_out(a) for layer in layers):
            return row
        with self._lock:
            for layer in layers:
                row = _apply_layer_row(row, layer.out_rem.get(a), layer.out_add.get(a))
        return np.sort(row)

    def in_(self, b: int) -> np.ndarray:
        """Sources pointing at row ``b``, sorted int32 (``with_in`` only)."""
        _, base_in, layers = self._state
        assert base_in is not None, "relation keeps no reverse direction"
        row = base_in.row(b)
        if not any(layer.touches_in(b) for layer in layers):
            return row
        with self._lock:
            for layer in layers:
                row = _apply_layer_row(row, layer.in_rem.get(b), layer.in_add.get(b))
        return np.sort(row)

    def out_degrees(self, n_rows: int) -> np.ndarray:
        base_out, _, layers = self._state
        deg = np.zeros(n_rows, np.int64)
        base_deg = np.diff(base_out.indptr)
        deg[: base_deg.shape[0]] = base_deg[:n_rows]
        with self._lock:
            for layer in layers:
                for a, s in layer.out_add.items():
                    deg[a] += len(s)
                for a, s in layer.out_rem.items():
                    deg[a] -= len(s)
        return deg

    def count(self) -> int:
        base_out, _, layers = self._state
        with self._lock:
            return base_out.nnz + sum(
                sum(map(len, layer.out_add.values())) - sum(map(len, layer.out_rem.values())) for layer in layers
            )

    def nbytes(self) -> int:
        base_out, base_in, _ = self._state
        return base_out.nbytes() + (base_in.nbytes() if base_in is not None else 0)

    def overlay_size(self) -> int:
        return sum(layer.size() for layer in self._state[2])

    # -- writes (caller holds the lock) ---------------------------------
    def add(self, a: int, b: int, in_base: bool | None = None) -> bool:
        if self.contains(a, b, in_base):
            return False
        top = self._state[2][-1]
        if _set_discard(top.out_rem, a, b):
            if self.with_in:
                _set_discard(top.in_rem, b, a)
        else:
            _set_add(top.out_add, a, b)
            if self.with_in:
                _set_add(top.in_add, b, a)
        return True

    def remove(self, a: int, b: int, in_base: bool | None = None) -> bool:
        if not self.contains(a, b, in_base):
            return False
        top = self._state[2][-1]
        if _set_discard(top.out_add, a, b):
            if self.with_in:
                _set_discard(top.in_add, b, a)
        else:
            _set_add(top.out_rem, a, b)
            if self.with_in:
                _set_add(top.in_rem, b, a)
        return True

    # -- compaction ----------------------------------------------------
    def freeze(self) -> None:
        """Push a fresh top layer; the ones below stop changing."""
        base_out, base_in, layers = self._state
        self._state = (base_out, base_in, (*layers, _EdgeLayer()))

    def merged_base(self, n_rows: int) -> tuple[CSR, CSR | None]:
        """Base and every layer but the top folded into a new base."""
        base_out, _, layers = self._state
        frozen = layers[:-1]
        src, dst = base_out.edges()
        keys = src.astype(np.int64) * n_rows + dst
        for layer in frozen:
            rem = _pair_keys(layer.out_rem, n_rows)
            if rem.shape[0]:
                keys = np.delete(keys, np.searchsorted(keys, rem))
            add = _pair_keys(layer.out_add, n_rows)
            if add.shape[0]:
                keys = np.insert(keys, np.searchsorted(keys, add), add)
        out = from_pairs(keys // n_rows, keys % n_rows, n_rows)
        return out, (transpose(out, n_rows) if self.with_in else None)

    def swap_base(self, base_out: CSR, base_in: CSR | None) -> None:
        """Install a base made by ``merged_base``; caller holds the lock."""
        self._state = (base_out, base_in, (self._state[2][-1],))

    def base(self) -> tuple[CSR, CSR | None]:
        return self._state[0], self._state[1]

    # -- degree queries (appended; read-only) ---------------------------
    def in_degree(self, b: int) -> int:
        """How many sources point at row ``b`` (``with_in`` only)."""
        _, base_in, layers = self._state
        assert base_in is not None, "relation keeps no reverse direction"
        start, end = base_in.span(b)
        degree = end - start
        if any(layer.touches_in(b) for layer in layers):
            with self._lock:
                for layer in layers:
                    degree += len(layer.in_add.get(b, ())) - len(layer.in_rem.get(b, ()))
        return degree

    def in_degrees(self, rows: np.ndarray) -> np.ndarray:
        """``in_degree`` of many rows at once (int64; 0 past the end): one
        gather over the base, then the overlay's net change for the rows it
        touches. Each layer's adds are absent below and its removals present
        below, so the count is exact."""
        _, base_in, layers = self._state
        assert base_in is not None, "relation keeps no reverse direction"
        rows = np.asarray(rows, np.int64)
        inside = (rows >= 0) & (rows < base_in.n_rows)
        if inside.any():
            safe = np.where(inside, rows, 0)
            indptr = base_in.indptr
            degrees = np.where(inside, indptr[safe + 1].astype(np.int64) - indptr[safe], 0)
        else:
            degrees = np.zeros(rows.shape[0], np.int64)
        if any(layer.in_add or layer.in_rem for layer in layers):
            with self._lock:
                wanted = set(rows.tolist())
                changed: dict[int, int] = {}
                for layer in layers:
                    # keys() & set walks the smaller side.
                    for b in layer.in_add.keys() & wanted:
                        changed[b] = changed.get(b, 0) + len(layer.in_add[b])
                    for b in layer.in_rem.keys() & wanted:
                        changed[b] = changed.get(b, 0) - len(layer.in_rem[b])
            for i, b in enumerate(rows.tolist()):
                delta = changed.get(b)
                if delta:
                    degrees[i] += delta
        return degrees


def _pair_keys(d: dict[int, set[int]], n_rows: int) -> np.ndarray:
    if not d:
        return np.zeros(0, np.int64)
    keys = np.fromiter((a * n_rows + b for a, s in d.items() for b in s), np.int64)
    keys.sort()
    return keys


# An interaction value: (strength at last update, last update time in whole
# seconds); None marks a deleted pair.
Value = tuple[float, int] | None


@dataclass
class _WeightLayer:
    out: dict[int, dict[int, Value]] = field(default_factory=dict)
    in_: dict[int, dict[int, Value]] = field(default_factory=dict)

    def size(self) -> int:
        return sum(map(len, self.out.values()))


class WeightedEdges:
    """Directed pairs with a time-decayed strength.

    The base stores per edge the target row (int32), the strength at the
    last update (float32) and that update's time (uint32 seconds); the
    reverse direction stores only edge offsets (4 bytes). Decay happens on
    read: ``strength * 2 ** (-(now - time) / half_life)``, so an update is
    O(1)."""

    def __init__(self, base: CSR, base_in: CSR, lock: threading.RLock, half_life_s: float) -> None:
        self._lock = lock
        self.half_life_s = half_life_s
        self._state: tuple[CSR, CSR, tuple[_WeightLayer, ...]] = (base, base_in, (_WeightLayer(),))

    @staticmethod
    def build(src: np.ndarray, dst: np.ndarray, strength: np.ndarray, time: np.ndarray, n_rows: int,
              lock: threading.RLock, half_life_s: float) -> WeightedEdges:
        base = from_pairs(src, dst, n_rows, {
            "strength": np.asarray(strength, np.float32),
            "time": np.asarray(time, np.uint32),
        })
        return WeightedEdges(base, transpose_positions(base, n_rows), lock, half_life_s)

    def decay(self, strength: np.ndarray, time: np.ndarray, now: float) -> np.ndarray:
        age = np.maximum(now - time.astype(np.float64), 0.0)
        return (strength.astype(np.float64) * np.exp2(-age / self.half_life_s))

    # -- reads ---------------------------------------------------------
    def get(self, a: int, b: int, base_hint: tuple[Value] | None = None) -> Value:
        """The pair's value; ``base_hint``, if given, is ``(value in the
        base,)`` as ``base_values`` found it, saving the base lookup."""
        base, _, layers = self._state
        for layer in reversed(layers):
            d = layer.out.get(a)
            if d is not None and b in d:
                return d[b]
        if base_hint is not None:
            return base_hint[0]
        start, end = base.span(a)
        if start == end:
            return None
        i = start + int(np.searchsorted(base.indices[start:end], b))
        if i < end and int(base.indices[i]) == b:
            return float(base.values["strength"][i]), int(base.values["time"][i])
        return None

    def strength(self, a: int, b: int, now: float) -> float:
        value = self.get(a, b)
        if value is None:
            return 0.0
        s, t = value
        return float(s * 2.0 ** (-max(now - t, 0.0) / self.half_life_s))

    def out(self, a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(targets int32, strength float32 at last update, time uint32),
        sorted by target."""
        base, _, layers = self._state
        start, end = base.span(a)
        rows = base.indices[start:end]
        s = base.values["strength"][start:end]
        t = base.values["time"][start:end]
        if not any(a in layer.out for layer in layers):
            return rows, s, t
        with self._lock:
            for layer in layers:
                d = layer.out.get(a)
                if d:
                    rows, s, t = _override(rows, s, t, d)
        order = np.argsort(rows)
        return rows[order], s[order], t[order]

    def in_(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sources int32, strength float32, time uint32) of pairs into ``b``,
        sorted by source."""
        base, base_in, layers = self._state
        start, end = base_in.span(b)
        offsets = base_in.indices[start:end]
        rows = sources_of(base, offsets)
        s = base.values["strength"][offsets]
        t = base.values["time"][offsets]
        if not any(b in layer.in_ for layer in layers):
            return rows, s, t
        with self._lock:
            for layer in layers:
                d = layer.in_.get(b)
                if d:
                    rows, s, t = _override(rows, s, t, d)
        order = np.argsort(rows)
        return rows[order], s[order], t[order]

    def count(self) -> int:
        base, _, layers = self._state
        n = base.nnz
        with self._lock:
            # Each layer's entries are either new pairs, overrides or deletions
            # relative to what is below; count exactly by asking get().
            seen: dict[tuple[int, int], Value] = {}
            for layer in layers:
                for a, d in layer.out.items():
                    for b, v in d.items():
                        seen[(a, b)] = v
        for (a, b), v in seen.items():
            start, end = base.span(a)
            in_base = end > start and bool(np.isin(b, base.indices[start:end]))
            if v is None and in_base:
                n -= 1
            elif v is not None and not in_base:
                n += 1
        return n

    def nbytes(self) -> int:
        base, base_in, _ = self._state
        return base.nbytes() + base_in.nbytes()

    def overlay_size(self) -> int:
        return sum(layer.size() for layer in self._state[2])

    # -- writes (caller holds the lock) ---------------------------------
    def base_values(self, a: np.ndarray, b: np.ndarray) -> list[tuple[Value]]:
        """For each pair (rows, int32), ``(value in the base,)``: a hint for
        ``add``, looked up for a whole batch with one vectorised search."""
        base = self._state[0]
        pos = base.positions(a, b)
        found = pos >= 0
        if not found.any():
            return [(None,)] * int(pos.shape[0])
        at = np.where(found, pos, 0)
        s = base.values["strength"][at].tolist()
        t = base.values["time"][at].tolist()
        return [((s[i], t[i]),) if f else (None,) for i, f in enumerate(found.tolist())]

    def add(self, a: int, b: int, weight: float, when: int, base_hint: tuple[Value] | None = None) -> None:
        """Add ``weight`` at time ``when`` (whole seconds) to the pair;
        ``base_hint`` as for ``get``."""
        current = self.get(a, b, base_hint)
        if current is None:
            value: Value = (to_f32(weight), when)
        else:
            s, t = current
            if when >= t:
                value = (to_f32(s * 2.0 ** (-(when - t) / self.half_life_s) + weight), when)
            else:
                # A late event decays from its own time to the newest one.
                value = (to_f32(s + weight * 2.0 ** (-(t - when) / self.half_life_s)), t)
        self._put(a, b, value)

    def delete(self, a: int, b: int) -> None:
        if self.get(a, b) is not None:
            self._put(a, b, None)

    def _put(self, a: int, b: int, value: Value) -> None:
        top = self._state[2][-1]
        d = top.out.get(a)
        if d is None:
            top.out[a] = d = {}
        d[b] = value
        d = top.in_.get(b)
        if d is None:
            top.in_[b] = d = {}
        d[a] = value

    # -- compaction ----------------------------------------------------
    def freeze(self) -> None:
        base, base_in, layers = self._state
        self._state = (base, base_in, (*layers, _WeightLayer()))

    def merged_base(self, n_rows: int) -> tuple[CSR, CSR]:
        base, _, layers = self._state
        src, dst = base.edges()
        keys = src.astype(np.int64) * n_rows + dst
        strength = base.values["strength"]
        time = base.values["time"]
        for layer in layers[:-1]:
            items = [(a * n_rows + b, v) for a, d in layer.out.items() for b, v in d.items()]
            if not items:
                continue
            items.sort(key=lambda kv: kv[0])
            lkeys = np.fromiter((k for k, _ in items), np.int64, len(items))
            pos = np.searchsorted(keys, lkeys)
            present = (pos < keys.shape[0]) & (keys[np.minimum(pos, max(keys.shape[0] - 1, 0))] == lkeys) \
                if keys.shape[0] else np.zeros(len(items), bool)
            dead = np.fromiter((v is None for _, v in items), bool, len(items))
            ls = np.fromiter((v[0] if v is not None else 0.0 for _, v in items), np.float32, len(items))
            lt = np.fromiter((v[1] if v is not None else 0 for _, v in items), np.uint32, len(items))
            strength = strength.copy()
            time = time.copy()
            update = present & ~dead
            strength[pos[update]] = ls[update]
            time[pos[update]] = lt[update]
            drop = pos[present & dead]
            keys, strength, time = np.delete(keys, drop), np.delete(strength, drop), np.delete(time, drop)
            new = ~present & ~dead
            at = np.searchsorted(keys, lkeys[new])
            keys = np.insert(keys, at, lkeys[new])
            strength = np.insert(strength, at, ls[new])
            time = np.insert(time, at, lt[new])
        out = from_pairs(keys // n_rows, keys % n_rows, n_rows, {"strength": strength, "time": time})
        return out, transpose_positions(out, n_rows)

    def swap_base(self, base: CSR, base_in: CSR) -> None:
        self._state = (base, base_in, (self._state[2][-1],))

    def base(self) -> tuple[CSR, CSR]:
        return self._state[0], self._state[1]


def _override(rows: np.ndarray, s: np.ndarray, t: np.ndarray,
              d: dict[int, Value]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = _as_rows(list(d.keys()))
    keep = ~np.isin(rows, keys)
    live = [(k, v) for k, v in d.items() if v is not None]
    return (
        np.concatenate([rows[keep], np.fromiter((k for k, _ in live), ROW, len(live))]),
        np.concatenate([s[keep], np.fromiter((v[0] for _, v in live), np.float32, len(live))]),
        np.concatenate([t[keep], np.fromiter((v[1] for _, v in live), np.uint32, len(live))]),
    )
