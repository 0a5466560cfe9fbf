"""The CSV line reader: edge and profile CSVs, row by row with the csv
module. Its row functions (``edge_row``, ``profile_row``) and header check
(``csv_kind``) are the definition of what a row means: the column-wise
readers (``csv_columns``, ``parquet``) ask them about every row they doubt.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..errors import EventLogError, InvalidEvent
from ..events import event_time, validate
from ..model import Event, EventKind, Profile, encode_region
from ..table import EventTable
from .common import (
    AGE_BANDS,
    ASSURANCES,
    EDGE_COLUMNS,
    EDGE_EVENT_NAMES,
    EDGE_OPTIONAL_COLUMNS,
    JSON_SUFFIXES,
    PRIVACIES,
    PROFILE_COLUMNS,
    PROFILE_OPTIONAL_COLUMNS,
    STATES,
    TELL_EVERY,
    BadLines,
    Cursor,
    EnumColumn,
    ProfileEnum,
    RowError,
    csv_line,
    invalid_reason,
)

__all__ = ["EdgeLayout", "EdgeRow", "csv_kind", "edge_row", "profile_row", "read_csv_lines"]

# Far beyond any clock; only keeps absurd integers from overflowing a float.
_MAX_TIME_MS = 2**62

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def read_csv_lines(
    handle: IO[str], label: str, now: float, max_future_s: float, cursor: Cursor, bad_lines: BadLines
) -> EventTable:
    """An edge or a profile CSV (told apart by its header) read from
    ``handle`` line by line; I/O and csv errors propagate for the caller to
    place on ``cursor.line``."""
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        raise EventLogError(label, 1, "empty file: expected a CSV header line") from None
    if csv_kind(header, label) == "edge":
        return _read_edge_csv(reader, header, label, now, max_future_s, cursor, bad_lines)
    return _read_profile_csv(reader, header, label, now, cursor, bad_lines)


def csv_kind(header: list[str], label: str) -> str:
    """The CSV form the header names, "edge" or "profile"; raises
    EventLogError on line 1 for anything else."""
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise EventLogError(label, 1, f"column {column!r} appears twice in the header")
        seen.add(column)
    if "event" in seen or "time_ms" in seen:
        kind, required, optional = "edge", EDGE_COLUMNS, EDGE_OPTIONAL_COLUMNS
    elif "user_id" in seen:
        kind, required, optional = "profile", PROFILE_COLUMNS, PROFILE_OPTIONAL_COLUMNS
    else:
        raise EventLogError(
            label,
            1,
            f"unknown format: header {','.join(header)!r} is neither an edge CSV "
            f"({','.join(EDGE_COLUMNS)}[,event_id]) nor a profile CSV "
            f"({','.join(PROFILE_COLUMNS)}[,{','.join(PROFILE_OPTIONAL_COLUMNS)}]); "
            f"JSON lines files must end in {', '.join(sorted(JSON_SUFFIXES))}",
        )
    missing = [c for c in required if c not in seen]
    if missing:
        raise EventLogError(label, 1, f"{kind} CSV header is missing column(s) {', '.join(missing)}")
    unknown = [c for c in header if c not in required and c not in optional]
    if unknown:
        # A typo such as "region" for "region_code" would otherwise drop the
        # column silently.
        raise EventLogError(label, 1, f"unknown column(s) {', '.join(map(repr, unknown))} in the {kind} CSV header")
    return kind


def _rows(
    reader: Any, label: str, header: list[str], cursor: Cursor, bad_lines: BadLines
) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for every non-blank row of the right width;
    rows of another width go to ``bad_lines``. The line number is the
    row's last physical line (a quoted cell may span lines)."""
    width = len(header)
    cursor.line = reader.line_num
    row: list[str]
    for row in reader:
        line = cursor.line = reader.line_num
        if line % TELL_EVERY == 0:
            cursor.tell()
        if not row:
            continue
        if len(row) != width:
            error = EventLogError(label, line, f"expected {width} cells ({','.join(header)}), got {len(row)}")
            bad_lines.reject(error, csv_line(row), csv_line(header))
            continue
        yield line, row


def _int_cell(cell: str, column: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise RowError(f"{column} is not an integer: {cell!r}") from None


@dataclass(frozen=True)
class EdgeLayout:
    """Where each edge CSV column sits in a row (event_id None: absent)."""

    time: int
    event: int
    actor: int
    target: int
    event_id: int | None

    @staticmethod
    def of(header: list[str]) -> EdgeLayout:
        return EdgeLayout(
            header.index("time_ms"), header.index("event"), header.index("actor_id"), header.index("target_id"),
            header.index("event_id") if "event_id" in header else None,
        )


EdgeRow = tuple[float, int, int, int, int, str]


def edge_row(row: Sequence[str], layout: EdgeLayout, now: float, max_future_s: float) -> EdgeRow:
    """One edge CSV row as (time, kind, actor, target, detail, event_id);
    raises RowError with the reason. This is the definition of an edge
    row: the column-wise reader asks it about every row it doubts."""
    name = row[layout.event]
    try:
        kind, detail = EDGE_EVENT_NAMES[name]
    except KeyError:
        raise RowError(f"event: unknown event name {name!r} (expected one of {', '.join(EDGE_EVENT_NAMES)})") from None
    time_ms = _int_cell(row[layout.time], "time_ms")
    if not -_MAX_TIME_MS <= time_ms <= _MAX_TIME_MS:
        # Beyond float range the division below would raise OverflowError.
        raise RowError(f"time_ms is out of range: {time_ms}")
    actor = _int_cell(row[layout.actor], "actor_id")
    target = _int_cell(row[layout.target], "target_id")
    event_id = row[layout.event_id] if layout.event_id is not None else ""
    try:
        when = event_time(time_ms / 1000.0, now, max_future_s)
        validate(Event(event_id, when, kind, actor, target, detail))
    except InvalidEvent as err:
        raise RowError(invalid_reason(err, rename={"event_time": "time_ms"})) from None
    return when, int(kind), actor, target, detail, event_id


def _read_edge_csv(
    reader: Any, header: list[str], label: str, now: float, max_future_s: float, cursor: Cursor,
    bad_lines: BadLines,
) -> EventTable:
    layout = EdgeLayout.of(header)
    times: list[float] = []
    kinds: list[int] = []
    actors: list[int] = []
    targets: list[int] = []
    details: list[int] = []
    ids: list[str] = []
    # The per-row work stays plain Python on purpose: a protobuf message per
    # line would cost several times more, and `validate` on a slotted Event
    # keeps the rules in one place.
    for line, row in _rows(reader, label, header, cursor, bad_lines):
        try:
            when, kind, actor, target, detail, event_id = edge_row(row, layout, now, max_future_s)
        except RowError as err:
            bad_lines.reject(EventLogError(label, line, err.reason), csv_line(row), csv_line(header))
            continue
        times.append(when)
        kinds.append(kind)
        actors.append(actor)
        targets.append(target)
        details.append(detail)
        ids.append(event_id)
    return EventTable(
        time=np.array(times, np.float64),
        kind=np.array(kinds, np.uint8),
        actor=np.array(actors, np.int64),
        target=np.array(targets, np.int64),
        detail=np.array(details, np.int16),
        event_id=np.array(ids, object),
    )


def _enum_cell(cell: str, column: EnumColumn[ProfileEnum], name: str) -> ProfileEnum | None:
    text = cell.strip()
    if not text:
        return None
    try:
        member = column.names[text.upper()]
    except KeyError:
        raise RowError(f"{name}: unknown value {cell!r} ({column.hint})") from None
    if member is None:
        raise RowError(f"{name}: {cell!r} is not allowed; leave the cell empty when not carried")
    return member


def _bool_cell(cell: str, column: str) -> bool | None:
    text = cell.strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RowError(f"{column}: {cell!r} is not a boolean (true/false, 1/0, yes/no, or empty)")


def profile_row(row: list[str], col: dict[str, int], now: float) -> Profile:
    """One profile CSV row; raises RowError with the reason."""
    i_region = col.get("region_code")
    i_disc = col.get("discoverable")
    i_assur = col.get("age_assurance")
    user_id = _int_cell(row[col["user_id"]], "user_id")
    region: str | None = None
    if i_region is not None and row[i_region]:
        region = row[i_region]
        try:
            encode_region(region)
        except ValueError as err:
            raise RowError(str(err)) from None
    profile = Profile(
        user_id=user_id,
        age_band=_enum_cell(row[col["age_band"]], AGE_BANDS, "age_band"),
        message_privacy=_enum_cell(row[col["message_privacy"]], PRIVACIES, "message_privacy"),
        account_state=_enum_cell(row[col["account_state"]], STATES, "account_state"),
        region_code=region,
        discoverable=_bool_cell(row[i_disc], "discoverable") if i_disc is not None else None,
        age_assurance=_enum_cell(row[i_assur], ASSURANCES, "age_assurance") if i_assur is not None else None,
    )
    try:
        validate(Event("", now, EventKind.PROFILE, user_id, profile=profile))
    except InvalidEvent as err:
        raise RowError(invalid_reason(err)) from None
    return profile


def _read_profile_csv(
    reader: Any, header: list[str], label: str, now: float, cursor: Cursor, bad_lines: BadLines
) -> EventTable:
    col = {name: i for i, name in enumerate(header)}
    actors: list[int] = []
    profiles: dict[int, Profile] = {}
    for line, row in _rows(reader, label, header, cursor, bad_lines):
        try:
            profile = profile_row(row, col, now)
        except RowError as err:
            bad_lines.reject(EventLogError(label, line, err.reason), csv_line(row), csv_line(header))
            continue
        profiles[len(actors)] = profile
        actors.append(profile.user_id)
    n = len(actors)
    return EventTable(
        time=np.full(n, now, np.float64),
        kind=np.full(n, int(EventKind.PROFILE), np.uint8),
        actor=np.array(actors, np.int64),
        target=np.zeros(n, np.int64),
        detail=np.zeros(n, np.int16),
        event_id=np.full(n, "", object),
        profiles=profiles,
    )
