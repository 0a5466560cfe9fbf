"""The set of event ids applied so far: what makes a retried batch, or a
rebuild fed overlapping logs, apply each event once.

Two layers: a sorted, read-only base array of UTF-8 ids (from a snapshot,
possibly memory-mapped, so twenty million ids cost no start-up time and no
Python objects) and a Python dict of the ids added since.

Each id keeps a 64-bit digest of its event's content (``digests``): a retry
(same id, same content) is a duplicate, the same id with other content is
a client bug the caller refuses (``EventIdConflict``). Digest 0
(``UNKNOWN``) means "content not known": ids from a snapshot written before
digests were kept. Such an id stays a duplicate whatever is sent with it,
as before (a reuse cannot be told from a retry there)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Self

import numpy as np
import numpy.typing as npt

from .errors import EventIdConflict
from .model import Event, EventKind, Profile, encode_region

__all__ = ["UNKNOWN", "EventIdSet", "content_digests", "encode_each", "encode_ids", "event_digests",
           "profile_code", "split_batch"]

# The digest of an id whose event's content is not known.
UNKNOWN = 0
_PROFILE = int(EventKind.PROFILE)


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


def _sorted_unique_with(values: np.ndarray, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_sorted_unique`` carrying a parallel uint64 array along (the first
    digest of each run of equal ids is kept)."""
    order = np.argsort(values, kind="stable")
    values, digests = values[order], digests[order]
    keep = np.ones(values.shape[0], bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep], digests[keep]


# -- content digests -------------------------------------------------------
#
# What an event says, as four integers: kind, actor, target and detail (the
# interaction type, report category or surface; for a profile event every
# field it carries, packed by ``profile_code``). event_id is the key, not the
# content; event_time is left out on purpose: the server clamps it to its
# clock (so the stored time is not what the client sent, and a rebuild only
# knows the clamped one), and clients that stamp a retry anew must stay
# retries. The four are mixed with splitmix64's finaliser in numpy, so the
# offline fold digests twenty million rows in a second; a cryptographic hash
# buys nothing here (a client can only make its own events collide).

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def profile_code(profile: Profile | None) -> int:
    """Every field a profile update carries, exactly, as one non-negative
    int (0 for None; an absent field is 0 in its bits, set enums are >= 1)."""
    if profile is None:
        return 0
    region = encode_region(profile.region_code) if profile.region_code is not None else 0
    discoverable = 0 if profile.discoverable is None else 1 + int(profile.discoverable)
    return (int(profile.age_band or 0) | int(profile.message_privacy or 0) << 4
            | int(profile.account_state or 0) << 8 | int(profile.age_assurance or 0) << 12
            | discoverable << 16 | region << 20)


def _mix(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser (a bijection of uint64), in place."""
    z ^= z >> _S30
    z *= _MIX_1
    z ^= z >> _S27
    z *= _MIX_2
    z ^= z >> _S31
    return z


def content_digests(kind: npt.NDArray[np.integer], actor: npt.NDArray[np.integer],
                    target: npt.NDArray[np.integer], detail: npt.NDArray[np.integer]) -> npt.NDArray[np.uint64]:
    """The content digest of each event given in columns (all shape (n,);
    ``detail`` holds ``profile_code`` on profile rows): uint64 shape (n,),
    never ``UNKNOWN``."""
    # uint64 arrays wrap silently on overflow (only numpy scalars warn).
    h = _mix(np.asarray(kind, np.int64).view(np.uint64) + _GOLDEN)
    for column in (actor, target, detail):
        h *= _GOLDEN
        h += np.asarray(column, np.int64).view(np.uint64)
        h = _mix(h)
    h[h == UNKNOWN] = 1
    return h


def event_digests(events: Sequence[Event]) -> list[int]:
    """``content_digests`` of Event objects, as Python ints."""
    if not events:
        return []
    flat: list[int] = []
    for e in events:
        kind = int(e.kind)
        flat += (kind, e.actor, e.target, profile_code(e.profile) if kind == _PROFILE else e.detail)
    # One array for the four columns: converting one list is quicker than four.
    rows = np.array(flat, np.int64).reshape(-1, 4)
    digests: list[int] = content_digests(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]).tolist()
    return digests


class EventIdSet:
    """``in``, ``|=`` and ``len`` over the applied event ids, and the
    content digest of each (``digests_of``).

    ``base``: sorted unique ``S<n>`` array (see ``encode_ids``);
    ``base_digests``: uint64 shape (n,), the digest of each base id, or None
    when none is known (all ``UNKNOWN``). Neither is ever written to. Not
    thread-safe on its own: the store's lock guards it."""

    __slots__ = ("_added", "_base", "_base_digests")

    def __init__(self, base: np.ndarray | None = None, base_digests: np.ndarray | None = None) -> None:
        if base is None:
            base = np.zeros(0, "S1")
        if base.dtype.kind != "S":
            raise TypeError(f"event id base must be a bytes array, got {base.dtype}")
        if base_digests is not None and (base_digests.dtype != np.uint64 or base_digests.shape != base.shape):
            raise TypeError(f"event id digests must be uint64 of shape {base.shape}, "
                            f"got {base_digests.dtype} {base_digests.shape}")
        self._base = base
        self._base_digests = base_digests
        self._added: dict[str, int] = {}

    @staticmethod
    def from_ids(ids: Iterable[str] | npt.NDArray[np.object_],
                 digests: npt.NDArray[np.uint64] | None = None) -> EventIdSet:
        """The set of ``ids`` (empty ones left out); ``digests``: uint64,
        one per id, or None for ``UNKNOWN``. A repeated id keeps the digest
        of its first occurrence."""
        values = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=object)
        if digests is None:
            return EventIdSet(encode_ids(values))
        digests = np.asarray(digests, np.uint64)
        if digests.shape != values.shape:
            raise ValueError(f"{digests.shape[0]} digests for {values.shape[0]} ids")
        with_id = values != ""
        values, digests = values[with_id], digests[with_id]
        if values.shape[0] == 0:
            return EventIdSet()
        return EventIdSet(*_sorted_unique_with(encode_each(values), digests))

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
        """``id in self`` for each id, in order (see ``digests_of``)."""
        return [d is not None for d in self.digests_of(ids)]

    def digests_of(self, ids: Sequence[str]) -> list[int | None]:
        """For each id, in order: None if it was never applied, else the
        digest kept with it (``UNKNOWN`` if none was). One binary search of
        the base for the whole batch (a batch of 100 costs about as much as
        a few single lookups)."""
        added = self._added
        found: list[int | None] = [added.get(event_id) for event_id in ids]
        base = self._base
        if base.shape[0] == 0:
            return found
        probe = [k for k, event_id in enumerate(ids) if event_id and found[k] is None]
        if not probe:
            return found
        keys = encode_each(np.array([ids[k] for k in probe], object))
        # An id longer than the base's width is not in it; cutting it to the
        # width could make it look like one that is.
        fits = np.char.str_len(keys) <= base.dtype.itemsize
        keys = keys.astype(base.dtype)
        pos = np.minimum(np.searchsorted(base, keys), base.shape[0] - 1)
        hit = ((base[pos] == keys) & fits).tolist()
        digests = self._base_digests
        known = digests[pos].tolist() if digests is not None else [UNKNOWN] * len(probe)
        for k, is_hit, digest in zip(probe, hit, known, strict=True):
            if is_hit:
                found[k] = int(digest)
        return found

    def __ior__(self, ids: Iterable[str]) -> Self:
        """Add ids whose content is not known (``UNKNOWN``)."""
        self._added.update(dict.fromkeys(ids, UNKNOWN))
        return self

    def add(self, event_id: str, digest: int = UNKNOWN) -> None:
        self._added[event_id] = digest

    def record(self, ids: Sequence[str], digests: Sequence[int]) -> None:
        """Add each non-empty id with its digest (ids not yet in the set)."""
        self._added.update((i, d) for i, d in zip(ids, digests, strict=True) if i)

    def __len__(self) -> int:
        # Ids added after loading are never already in the base: they were
        # checked against it before being added.
        return int(self._base.shape[0]) + len(self._added)

    def to_array(self) -> np.ndarray:
        """Every id, sorted and unique: the base merged with the additions
        (``S<n>``, the snapshot's on-disk form)."""
        return self.to_arrays()[0]

    def to_arrays(self) -> tuple[np.ndarray, npt.NDArray[np.uint64]]:
        """(every id, sorted and unique, ``S<n>``; the digest of each,
        uint64 of the same shape): the snapshot's on-disk form."""
        base_digests = self._base_digests
        if base_digests is None:
            base_digests = np.zeros(self._base.shape[0], np.uint64)
        if not self._added:
            return np.asarray(self._base), np.asarray(base_digests)
        ids = np.array(list(self._added), object)
        added, added_digests = _sorted_unique_with(
            encode_each(ids), np.fromiter(self._added.values(), np.uint64, len(self._added)))
        if self._base.shape[0] == 0:
            return added, added_digests
        width = max(self._base.dtype.itemsize, added.dtype.itemsize)
        return _sorted_unique_with(
            np.concatenate([self._base.astype(f"S{width}"), added.astype(f"S{width}")]),
            np.concatenate([base_digests, added_digests]))


def split_batch(seen: EventIdSet, ids: Sequence[str], digests: Sequence[int]) -> list[int]:
    """The positions of a batch's events to apply, in order: every event
    without an id and the first of each id not applied before. A later
    event with an id already applied (before, or earlier in the batch) is a
    duplicate if its digest matches (or the kept one is ``UNKNOWN``);
    otherwise raises EventIdConflict naming its position, so the caller can
    refuse the whole batch before anything is applied."""
    known = seen.digests_of(ids)
    picked: list[int] = []
    batch: dict[str, int] = {}
    for i, eid in enumerate(ids):
        if eid:
            kept = known[i]
            if kept is None:
                kept = batch.get(eid)
            if kept is not None:
                if kept != UNKNOWN and kept != digests[i]:
                    raise EventIdConflict(eid, i)
                continue
            batch[eid] = digests[i]
        picked.append(i)
    return picked
