"""Events in columnar form: what the offline rebuild reads and folds.

A bulk log of millions of events stays a handful of numpy arrays instead of
millions of Python objects; the fold in ``graph.fold`` works on whole
columns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .event_ids import encode_each
from .model import Event, EventKind, Profile

# The event columns of an EventTable, in field order.
COLUMNS = ("time", "kind", "actor", "target", "detail", "event_id")


@dataclass
class EventColumns:
    """A column-wise reader's rows while it mends them (``EventTable``'s
    columns, no profiles); ``rows`` makes the table."""

    time: np.ndarray
    kind: np.ndarray
    actor: np.ndarray
    target: np.ndarray
    detail: np.ndarray
    event_id: np.ndarray

    def set_row(self, i: int, row: Iterable[Any]) -> None:
        """Overwrite row ``i``, values in ``COLUMNS`` order (columns a
        parser lent read-only are copied the first time)."""
        for name, value in zip(COLUMNS, row, strict=True):
            column = getattr(self, name)
            if not column.flags.writeable:
                column = column.copy()
                setattr(self, name, column)
            column[i] = value

    def rows(self, keep: np.ndarray) -> EventTable:
        """The rows where ``keep`` is true, as a table."""
        columns = [getattr(self, name) for name in COLUMNS]
        if not keep.all():
            columns = [column[keep] for column in columns]
        return EventTable(*columns)


@dataclass
class EventTable:
    """Events in log order; every array has length ``len(self)``.

    - ``time``: float64, Unix seconds.
    - ``kind``: uint8, ``EventKind`` values.
    - ``actor``, ``target``: int64 external user ids; ``target`` is 0 for
      profile and erase events (whose user is ``actor``).
    - ``detail``: int16, interaction type / report category / surface, else 0.
    - ``event_id``: object array of str ("" when the source had none).
    - ``profiles``: row index -> the profile carried by that PROFILE row.
    """

    time: np.ndarray
    kind: np.ndarray
    actor: np.ndarray
    target: np.ndarray
    detail: np.ndarray
    event_id: np.ndarray
    profiles: dict[int, Profile] = field(default_factory=dict)
    _applied: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.time.shape[0])

    @staticmethod
    def empty() -> EventTable:
        return EventTable(
            time=np.zeros(0, np.float64),
            kind=np.zeros(0, np.uint8),
            actor=np.zeros(0, np.int64),
            target=np.zeros(0, np.int64),
            detail=np.zeros(0, np.int16),
            event_id=np.zeros(0, object),
        )

    @staticmethod
    def from_events(events: list[Event]) -> EventTable:
        table = EventTable(
            time=np.array([e.time for e in events], np.float64),
            kind=np.array([int(e.kind) for e in events], np.uint8),
            actor=np.array([e.actor for e in events], np.int64),
            target=np.array([e.target for e in events], np.int64),
            detail=np.array([e.detail for e in events], np.int16),
            event_id=np.array([e.event_id for e in events], object),
        )
        table.profiles = {i: e.profile for i, e in enumerate(events) if e.profile is not None}
        return table

    @staticmethod
    def concat(tables: list[EventTable], *, consume: bool = False) -> EventTable:
        """Tables one after another, in the order given. ``consume``: each
        table's column is dropped as soon as it is copied, so at most one
        column is held twice (the readers' chunks; those tables are left
        without columns)."""
        if not tables:
            return EventTable.empty()
        profiles: dict[int, Profile] = {}
        offset = 0
        for t in tables:
            profiles.update({offset + i: p for i, p in t.profiles.items()})
            offset += len(t)
        columns: dict[str, np.ndarray] = {}
        for name in COLUMNS:
            columns[name] = np.concatenate([getattr(t, name) for t in tables])
            if consume:
                for t in tables:
                    setattr(t, name, None)
        return EventTable(**columns, profiles=profiles)

    def applied_rows(self) -> np.ndarray:
        """Indices (int64, ascending) of the rows to apply: every row
        without an event id and the first row of each id. Worked out once
        per table (the fold and the contact graph both ask): ids compare as
        UTF-8 bytes, sorted once, which on twenty million ids is many times
        faster than np.unique over str."""
        if self._applied is None:
            ids = self.event_id
            with_id = np.flatnonzero(ids != "")
            keep = np.ones(len(self), bool)
            if with_id.shape[0]:
                encoded = encode_each(ids[with_id])
                # Stable: the first row of a run of equal ids is the earliest.
                order = np.argsort(encoded, kind="stable")
                ordered = encoded[order]
                later = np.zeros(ordered.shape[0], bool)
                later[1:] = ordered[1:] == ordered[:-1]
                keep[with_id[order[later]]] = False
            self._applied = np.flatnonzero(keep)
        return self._applied

    def events(self) -> list[Event]:
        """Row objects, for the live apply path and tests (slow for bulk)."""
        return [
            Event(
                event_id=str(self.event_id[i]),
                time=float(self.time[i]),
                kind=EventKind(int(self.kind[i])),
                actor=int(self.actor[i]),
                target=int(self.target[i]),
                detail=int(self.detail[i]),
                profile=self.profiles.get(i),
            )
            for i in range(len(self))
        ]
