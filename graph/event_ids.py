"""The set of event ids applied so far: what makes a retried batch, or a
rebuild fed overlapping logs, apply each event once.

Two layers: a sorted, read-only base array of UTF-8 ids (from a snapshot,
possibly memory-mapped, so twenty million ids cost no start-up time and no
Python objects) and a Python set of the ids added since."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Self

import numpy as np
import numpy.typing as npt

__all__ = ["EventIdSet", "encode_each", "encode_ids"]


def encode_ids(ids: Iterable[str] | npt.NDArray[np.object_]) -> np.ndarray:
    """Non-empty ids as a sorted, unique fixed-width bytes array (dtype
    ``S<n>``, UTF-8). An id ending in NUL bytes is indistinguishable from the
    same id without them (numpy strips trailing NULs)."""
    values = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=object)
    values = values[values != ""]
    if values.shape[0] == 0:
        return np.zeros(0, "S1")
    return _sorted_unique(encode_each(values))


def encode_each(values: npt.NDArray[np.object_]) -> np.ndarray:
    """Each id (str) as UTF-8 in a fixed-width bytes array, same order."""
    if values.shape[0] == 0:
        return np.zeros(0, "S1")
    try:
        # Fast path: numpy encodes ASCII itself.
        return values.astype(np.bytes_)
    except UnicodeEncodeError:
        return np.array([v.encode() for v in values.tolist()], dtype=np.bytes_)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    # Sort and drop neighbours: several times faster than np.unique on
    # bytes arrays of millions of ids.
    values.sort()
    keep = np.ones(values.shape[0], bool)
    keep[1:] = values[1:] != values[:-1]
    unique: np.ndarray = values[keep]
    return unique


class EventIdSet:
    """``in``, ``|=`` and ``len`` over the applied event ids.

    ``base``: sorted unique ``S<n>`` array (see ``encode_ids``); it is never
    written to. Not thread-safe on its own: the store's lock guards it."""

    __slots__ = ("_added", "_base")

    def __init__(self, base: np.ndarray | None = None) -> None:
        if base is None:
            base = np.zeros(0, "S1")
        if base.dtype.kind != "S":
            raise TypeError(f"event id base must be a bytes array, got {base.dtype}")
        self._base = base
        self._added: set[str] = set()

    @staticmethod
    def from_ids(ids: Iterable[str] | npt.NDArray[np.object_]) -> "EventIdSet":
        return EventIdSet(encode_ids(ids))

    def __contains__(self, event_id: object) -> bool:
        if event_id in self._added:
            return True
        base = self._base
        if not isinstance(event_id, str) or base.shape[0] == 0:
            return False
        key = event_id.encode()
        if len(key) > base.dtype.itemsize:
            return False
        i = int(base.searchsorted(key))
        return i < base.shape[0] and bytes(base[i]) == key

    def seen_among(self, ids: Sequence[str]) -> list[bool]:
        """``id in self`` for each id, in order, with one binary search of
        the base for the whole batch (a batch of 100 costs about as much as
        a few single lookups)."""
        found = [event_id in self._added for event_id in ids]
        base = self._base
        if base.shape[0] == 0:
            return found
        probe = [k for k, event_id in enumerate(ids) if event_id and not found[k]]
        if not probe:
            return found
        keys = encode_each(np.array([ids[k] for k in probe], object))
        # An id longer than the base's width is not in it; cutting it to the
        # width could make it look like one that is.
        fits = np.char.str_len(keys) <= base.dtype.itemsize
        keys = keys.astype(base.dtype)
        pos = np.minimum(np.searchsorted(base, keys), base.shape[0] - 1)
        hit = (base[pos] == keys) & fits
        for k, is_hit in zip(probe, hit.tolist()):
            found[k] = is_hit
        return found

    def __ior__(self, ids: Iterable[str]) -> Self:
        self._added.update(ids)
        return self

    def add(self, event_id: str) -> None:
        self._added.add(event_id)

    def __len__(self) -> int:
        # Ids added after loading are never already in the base: they were
        # checked against it before being added.
        return int(self._base.shape[0]) + len(self._added)

    def to_array(self) -> np.ndarray:
        """Every id, sorted and unique: the base merged with the additions
        (``S<n>``, the snapshot's on-disk form)."""
        if not self._added:
            base: np.ndarray = np.asarray(self._base)
            return base
        added = encode_ids(self._added)
        if self._base.shape[0] == 0:
            return added
        width = max(self._base.dtype.itemsize, added.dtype.itemsize)
        return _sorted_unique(np.concatenate([self._base.astype(f"S{width}"), added.astype(f"S{width}")]))
