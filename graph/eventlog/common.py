"""Event log files read into an ``EventTable``, and the writers for them.

Four formats, told apart by extension (JSON lines, Parquet) or by the
header line (the two CSV forms); the text ones may be gzip-compressed
(``.gz``):

1. JSON lines (``.jsonl``, ``.ndjson``, ``.json``): one
   ``contactgraph.v1.GraphEvent`` per line in protobuf's JSON mapping, e.g.
   ``{"eventId":"e-1","eventTime":"2024-05-01T12:00:00Z","follow":{"actorId":"1","targetId":"2"}}``.
   Blank lines are skipped.
2. Edge CSV: header ``time_ms,event,actor_id,target_id`` and optionally
   ``event_id``, in any order. ``event`` is one of ``EDGE_EVENT_NAMES``;
   ``time_ms`` is Unix milliseconds. Without an ``event_id`` column every
   event id is "".
3. Profile CSV: header ``user_id,age_band,message_privacy,account_state`` and
   optionally ``region_code,discoverable,age_assurance``. Enum cells take the
   proto name (``AGE_BAND_16_17``) or its short form (``16_17``), any case;
   an empty cell means the field is not carried. Each row is a PROFILE event
   at ``now`` with event id "".
4. Parquet (``.parquet``): the columns of either CSV form, typed (edge:
   time_ms int64, event string, actor_id / target_id int64, optional
   event_id string; profile: user_id int64, strings as in the CSV,
   discoverable boolean); see ``graph.eventlog_arrow``.

Every bad line raises ``EventLogError(path, line, reason)``: lines count from
1, the header being line 1, and the reason names the column or field
(Parquet: ``file:row N: reason``, rows counting from 1). Given a
``BadLines`` budget, readers skip up to its limit of bad lines instead,
handing each to it. Edge CSVs (``graph.eventlog_arrow``) and JSON lines
(``graph.eventlog_json``) are parsed column-wise with pyarrow: lines the
array checks doubt go through the line-by-line reader here, and files
pyarrow could not number exactly (CSV) or that are not UTF-8 or corrupt gzip
(JSON lines) are read by it whole. That reader is the definition both follow.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from google.protobuf.descriptor import EnumDescriptor

from contactgraph.v1 import graph_events_pb2 as pb
from contactgraph.v1 import user_profile_pb2 as profile_pb

from ..errors import EventLogError, InvalidEvent, TooManyBadLines
from ..events import DEFAULT_MAX_FUTURE_S, event_from_proto, event_time, validate
from ..model import (
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
from ..table import EventTable

__all__ = [
    "EDGE_EVENT_NAMES",
    "EDGE_COLUMNS",
    "PROFILE_COLUMNS",
    "BadLines",
    "Progress",
    "RejectedLine",
    "read_event_file",
    "read_event_files",
    "write_edge_csv",
    "write_edge_parquet",
    "write_profile_csv",
]

JSON_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
PARQUET_SUFFIXES = frozenset({".parquet"})

# Told how far a reader got: (done, total, unit), unit "B" (bytes of the
# file on disk) or "rows".
Progress = Callable[[int, int, str], None]

# The event column of an edge CSV: name -> (kind, detail).
EDGE_EVENT_NAMES: dict[str, tuple[EventKind, int]] = {
    "follow": (EventKind.FOLLOW, 0),
    "unfollow": (EventKind.UNFOLLOW, 0),
    "block": (EventKind.BLOCK, 0),
    "unblock": (EventKind.UNBLOCK, 0),
    "mute": (EventKind.MUTE, 0),
    "unmute": (EventKind.UNMUTE, 0),
    "report": (EventKind.REPORT, int(ReportCategory.UNSPECIFIED)),
    "dismiss": (EventKind.DISMISS, int(Surface.UNSPECIFIED)),
    "message": (EventKind.INTERACTION, int(InteractionType.MESSAGE)),
    "share": (EventKind.INTERACTION, int(InteractionType.SHARE)),
    "comment": (EventKind.INTERACTION, int(InteractionType.COMMENT)),
    "mention": (EventKind.INTERACTION, int(InteractionType.MENTION)),
    "like": (EventKind.INTERACTION, int(InteractionType.LIKE)),
}

EDGE_COLUMNS: tuple[str, ...] = ("time_ms", "event", "actor_id", "target_id")
EDGE_OPTIONAL_COLUMNS: tuple[str, ...] = ("event_id",)
PROFILE_COLUMNS: tuple[str, ...] = ("user_id", "age_band", "message_privacy", "account_state")
PROFILE_OPTIONAL_COLUMNS: tuple[str, ...] = ("region_code", "discoverable", "age_assurance")

# Far beyond any clock; only keeps absurd integers from overflowing a float.
_MAX_TIME_MS = 2**62

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

_E = TypeVar("_E", AgeBand, MessagePrivacy, AccountState, AgeAssurance)


@dataclass(frozen=True)
class _EnumColumn(Generic[_E]):
    """How a profile CSV enum column is read: upper-case spelling -> value
    (None for the UNSPECIFIED value, which a cell may not name: empty means
    unset) and the hint an error shows."""

    names: dict[str, _E | None]
    hint: str


def _enum_column(descriptor: EnumDescriptor, model: type[_E]) -> _EnumColumn[_E]:
    # Built from the proto descriptor so that the accepted names follow the
    # API; the model's own member names (AGE_13_15) are accepted too.
    prefix = descriptor.values[0].name.removesuffix("UNSPECIFIED")
    names: dict[str, _E | None] = {}
    for value in descriptor.values:
        member = model(value.number) if value.number else None
        names[value.name] = member
        names[value.name.removeprefix(prefix)] = member
    for member in model:
        names.setdefault(member.name, member if member.value else None)
    valid = ", ".join(v.name for v in descriptor.values if v.number)
    return _EnumColumn(names, f"expected one of {valid} (or without {prefix}), or empty")


_AGE_BANDS = _enum_column(profile_pb.DESCRIPTOR.enum_types_by_name["AgeBand"], AgeBand)
_PRIVACIES = _enum_column(profile_pb.DESCRIPTOR.enum_types_by_name["MessagePrivacy"], MessagePrivacy)
_STATES = _enum_column(profile_pb.DESCRIPTOR.enum_types_by_name["AccountState"], AccountState)
_ASSURANCES = _enum_column(profile_pb.DESCRIPTOR.enum_types_by_name["AgeAssurance"], AgeAssurance)
_PROTO_NAME = {
    AgeBand: profile_pb.AgeBand.Name,
    MessagePrivacy: profile_pb.MessagePrivacy.Name,
    AccountState: profile_pb.AccountState.Name,
    AgeAssurance: profile_pb.AgeAssurance.Name,
}


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _format_suffix(path: Path) -> str:
    """The suffix that names the format, looking through a ``.gz``."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
    return Path(name).suffix


@contextmanager
def _open_text(path: Path) -> Iterator[tuple[IO[str], IO[bytes]]]:
    """(text, file on disk): the second tells progress."""
    # newline="" because the csv module does its own line splitting (quoted
    # cells may hold newlines); utf-8-sig drops the BOM spreadsheet tools
    # write, which would otherwise become part of the first column's name.
    with open(path, "rb") as raw:
        if _is_gzip(path):
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped, io.TextIOWrapper(
                unzipped, encoding="utf-8-sig", newline=""
            ) as handle:
                yield handle, raw
        else:
            with io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
                yield handle, raw


def _invalid_reason(err: InvalidEvent, *, rename: dict[str, str] | None = None) -> str:
    """An InvalidEvent as a reason that names the offending field."""
    message = str(err)
    field = (rename or {}).get(err.field, err.field)
    if field and field not in message:
        return f"{field}: {message}"
    return message


class _Cursor:
    """The last line a reader got through, so that an I/O error raised deep
    inside the csv or gzip module can still be reported as ``file:line``;
    ``tell`` reports progress (every ``_TELL_EVERY`` lines)."""

    __slots__ = ("line", "tell")

    def __init__(self) -> None:
        self.line = 0
        self.tell: Callable[[], None] = lambda: None


_TELL_EVERY = 1 << 16


class _RowError(Exception):
    """Why one row is bad; the reader adds the file and line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RejectedLine:
    """A bad line that was skipped: the error (``file:line: reason``), the
    line as read (a CSV row re-quoted by the csv module, so equal to the
    original unless that had needless quotes; a Parquet row as an edge CSV
    line) and the header line of its file ("" for JSON lines)."""

    error: EventLogError
    text: str
    header: str


class BadLines:
    """How many bad lines the readers may skip in all, and who hears of each.

    With ``limit`` 0 the first bad line raises its EventLogError; past a
    positive limit the next one raises TooManyBadLines. Lines, header
    problems of a whole file and unreadable files (I/O, gzip, encoding
    errors) are never skipped: they raise as before."""

    def __init__(self, limit: int = 0, on_reject: Callable[[RejectedLine], None] | None = None) -> None:
        if limit < 0:
            raise ValueError(f"the bad line limit must be >= 0, got {limit}")
        self.limit = limit
        self.on_reject = on_reject
        self.count = 0

    def reject(self, error: EventLogError, text: str, header: str) -> None:
        if self.count >= self.limit:
            if self.limit == 0:
                raise error
            raise TooManyBadLines(error, self.limit)
        self.count += 1
        if self.on_reject is not None:
            self.on_reject(RejectedLine(error, text, header))

    def held(self) -> "_HeldBadLines":
        """A budget sharing this one's count whose rejections reach it only
        on ``commit()``: a fast reader that may give up half way and leave
        the file to the line reader must not report a line twice."""
        return _HeldBadLines(self)


class _HeldBadLines(BadLines):
    def __init__(self, parent: BadLines) -> None:
        super().__init__(parent.limit, self._keep)
        self.count = parent.count
        self._parent = parent
        self._kept: list[RejectedLine] = []

    def _keep(self, rejected: RejectedLine) -> None:
        self._kept.append(rejected)

    def commit(self) -> None:
        for rejected in self._kept:
            self._parent.reject(rejected.error, rejected.text, rejected.header)
        self._kept.clear()


def _csv_line(cells: Sequence[str]) -> str:
    """Cells as one CSV line, without the line break."""
    out = io.StringIO()
    # The terminator decides which cells get quoted: with "\r\n" a cell
    # holding either character is quoted and so stays one cell.
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue().removesuffix("\r\n")


def read_event_file(
    path: str | Path,
    *,
    now: float,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
    bad_lines: BadLines | None = None,
    progress: Progress | None = None,
) -> EventTable:
    """Read one event log file (any of the four formats, text ones
    optionally .gz).

    ``now`` is the clock the events are read against: event times are clamped
    to it and an event more than ``max_future_s`` after it is an error;
    profile rows, which carry no time, happen at ``now``.
    Raises EventLogError naming the file, the 1-based line and the column
    (for the first bad line, or past ``bad_lines``' limit: the lines before
    it were skipped and handed to ``bad_lines``); a file that cannot be
    opened raises the usual OSError. ``progress`` hears how far reading got."""
    path = Path(path)
    label = str(path)
    bad_lines = bad_lines if bad_lines is not None else BadLines()
    suffix = _format_suffix(path)
    if suffix in PARQUET_SUFFIXES and not _is_gzip(path):
        from .csv_columns import read_parquet

        return read_parquet(path, label, now, max_future_s, bad_lines, progress)
    # pyarrow costs a fraction of a second to import: only here.
    if suffix in JSON_SUFFIXES:
        from .json_lines import read_json_lines as read_columns
    else:
        from .csv_columns import read_edge_csv as read_columns
    # Held: the column-wise reader may give the file up half way, and then
    # the line reader reports every bad line from the start.
    held = bad_lines.held()
    try:
        table = read_columns(path, label, now, max_future_s, held, progress)
    except TooManyBadLines:
        held.commit()
        raise
    if table is not None:
        held.commit()
        return table
    return _read_text_file(path, label, now, max_future_s, bad_lines, progress)


def _read_text_file(
    path: Path, label: str, now: float, max_future_s: float, bad_lines: BadLines, progress: Progress | None
) -> EventTable:
    """The line-by-line reader: JSON lines, profile CSVs, and edge CSVs the
    column-wise reader leaves to it."""
    cursor = _Cursor()
    size = path.stat().st_size
    with _open_text(path) as (handle, raw):
        if progress is not None:
            cursor.tell = lambda: progress(raw.tell(), size, "B")
        try:
            if _format_suffix(path) in JSON_SUFFIXES:
                return _read_json_lines(handle, label, now, max_future_s, cursor, bad_lines)
            reader = csv.reader(handle)
            try:
                header = next(reader)
            except StopIteration:
                raise EventLogError(label, 1, "empty file: expected a CSV header line") from None
            if _csv_kind(header, label) == "edge":
                return _read_edge_csv(reader, header, label, now, max_future_s, cursor, bad_lines)
            return _read_profile_csv(reader, header, label, now, cursor, bad_lines)
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
            # A truncated or corrupt .gz, bytes that are not UTF-8 or an
            # unterminated quote surface while reading the next line.
            raise EventLogError(label, cursor.line + 1, f"cannot read line: {err}") from err
        finally:
            cursor.tell()


def read_event_files(
    paths: Iterable[str | Path],
    *,
    now: float,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
    bad_lines: BadLines | None = None,
) -> EventTable:
    """Read several event log files and concatenate them in the order given
    (one ``bad_lines`` budget for all of them)."""
    bad_lines = bad_lines if bad_lines is not None else BadLines()
    return EventTable.concat(
        [read_event_file(p, now=now, max_future_s=max_future_s, bad_lines=bad_lines) for p in paths]
    )


# --- JSON lines ------------------------------------------------------------


def _read_json_lines(
    handle: IO[str], label: str, now: float, max_future_s: float, cursor: _Cursor, bad_lines: BadLines
) -> EventTable:
    events: list[Event] = []
    for line_no, text in enumerate(handle, start=1):
        cursor.line = line_no
        if line_no % _TELL_EVERY == 0:
            cursor.tell()
        if not text.strip():
            continue
        msg = pb.GraphEvent()
        try:
            json_format.Parse(text, msg)
            events.append(event_from_proto(msg, now, max_future_s))
        except json_format.ParseError as err:
            # Some ParseErrors span lines (they list the valid fields); one
            # line keeps ``file:line: reason`` greppable.
            reason = " ".join(str(err).split())
            error = EventLogError(label, line_no, f"invalid GraphEvent JSON: {reason}")
            bad_lines.reject(error, text.rstrip("\r\n"), "")
        except InvalidEvent as err:
            bad_lines.reject(EventLogError(label, line_no, _invalid_reason(err)), text.rstrip("\r\n"), "")
    return EventTable.from_events(events)


# --- CSV ---------------------------------------------------------------------


def _csv_kind(header: list[str], label: str) -> str:
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
    reader: Any, label: str, header: list[str], cursor: _Cursor, bad_lines: BadLines
) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for every non-blank row of the right width;
    rows of another width go to ``bad_lines``. The line number is the
    row's last physical line (a quoted cell may span lines)."""
    width = len(header)
    cursor.line = reader.line_num
    row: list[str]
    for row in reader:
        line = cursor.line = reader.line_num
        if line % _TELL_EVERY == 0:
            cursor.tell()
        if not row:
            continue
        if len(row) != width:
            error = EventLogError(label, line, f"expected {width} cells ({','.join(header)}), got {len(row)}")
            bad_lines.reject(error, _csv_line(row), _csv_line(header))
            continue
        yield line, row


def _int_cell(cell: str, column: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise _RowError(f"{column} is not an integer: {cell!r}") from None


@dataclass(frozen=True)
class _EdgeLayout:
    """Where each edge CSV column sits in a row (event_id None: absent)."""

    time: int
    event: int
    actor: int
    target: int
    event_id: int | None

    @staticmethod
    def of(header: list[str]) -> "_EdgeLayout":
        return _EdgeLayout(
            header.index("time_ms"), header.index("event"), header.index("actor_id"), header.index("target_id"),
            header.index("event_id") if "event_id" in header else None,
        )


_EdgeRow = tuple[float, int, int, int, int, str]


def _edge_row(row: Sequence[str], layout: _EdgeLayout, now: float, max_future_s: float) -> _EdgeRow:
    """One edge CSV row as (time, kind, actor, target, detail, event_id);
    raises _RowError with the reason. This is the definition of an edge
    row: the column-wise reader asks it about every row it doubts."""
    name = row[layout.event]
    try:
        kind, detail = EDGE_EVENT_NAMES[name]
    except KeyError:
        raise _RowError(f"event: unknown event name {name!r} (expected one of {', '.join(EDGE_EVENT_NAMES)})") from None
    time_ms = _int_cell(row[layout.time], "time_ms")
    if not -_MAX_TIME_MS <= time_ms <= _MAX_TIME_MS:
        # Beyond float range the division below would raise OverflowError.
        raise _RowError(f"time_ms is out of range: {time_ms}")
    actor = _int_cell(row[layout.actor], "actor_id")
    target = _int_cell(row[layout.target], "target_id")
    event_id = row[layout.event_id] if layout.event_id is not None else ""
    try:
        when = event_time(time_ms / 1000.0, now, max_future_s)
        validate(Event(event_id, when, kind, actor, target, detail))
    except InvalidEvent as err:
        raise _RowError(_invalid_reason(err, rename={"event_time": "time_ms"})) from None
    return when, int(kind), actor, target, detail, event_id


def _read_edge_csv(
    reader: Any, header: list[str], label: str, now: float, max_future_s: float, cursor: _Cursor,
    bad_lines: BadLines,
) -> EventTable:
    layout = _EdgeLayout.of(header)
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
            when, kind, actor, target, detail, event_id = _edge_row(row, layout, now, max_future_s)
        except _RowError as err:
            bad_lines.reject(EventLogError(label, line, err.reason), _csv_line(row), _csv_line(header))
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


def _enum_cell(cell: str, column: _EnumColumn[_E], name: str) -> _E | None:
    text = cell.strip()
    if not text:
        return None
    try:
        member = column.names[text.upper()]
    except KeyError:
        raise _RowError(f"{name}: unknown value {cell!r} ({column.hint})") from None
    if member is None:
        raise _RowError(f"{name}: {cell!r} is not allowed; leave the cell empty when not carried")
    return member


def _bool_cell(cell: str, column: str) -> bool | None:
    text = cell.strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _RowError(f"{column}: {cell!r} is not a boolean (true/false, 1/0, yes/no, or empty)")


def _profile_row(row: list[str], col: dict[str, int], now: float) -> Profile:
    """One profile CSV row; raises _RowError with the reason."""
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
            raise _RowError(str(err)) from None
    profile = Profile(
        user_id=user_id,
        age_band=_enum_cell(row[col["age_band"]], _AGE_BANDS, "age_band"),
        message_privacy=_enum_cell(row[col["message_privacy"]], _PRIVACIES, "message_privacy"),
        account_state=_enum_cell(row[col["account_state"]], _STATES, "account_state"),
        region_code=region,
        discoverable=_bool_cell(row[i_disc], "discoverable") if i_disc is not None else None,
        age_assurance=_enum_cell(row[i_assur], _ASSURANCES, "age_assurance") if i_assur is not None else None,
    )
    try:
        validate(Event("", now, EventKind.PROFILE, user_id, profile=profile))
    except InvalidEvent as err:
        raise _RowError(_invalid_reason(err)) from None
    return profile


def _read_profile_csv(
    reader: Any, header: list[str], label: str, now: float, cursor: _Cursor, bad_lines: BadLines
) -> EventTable:
    col = {name: i for i, name in enumerate(header)}
    actors: list[int] = []
    profiles: dict[int, Profile] = {}
    for line, row in _rows(reader, label, header, cursor, bad_lines):
        try:
            profile = _profile_row(row, col, now)
        except _RowError as err:
            bad_lines.reject(EventLogError(label, line, err.reason), _csv_line(row), _csv_line(header))
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


# --- writers -------------------------------------------------------------------


@contextmanager
def _open_write(path: Path) -> Iterator[IO[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_gzip(path):
        # mtime=0 and no embedded file name: the same data gives the same
        # bytes, so demo files are reproducible and diffable by checksum.
        with open(path, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0
        ) as zipped, io.TextIOWrapper(zipped, encoding="utf-8", newline="") as text:
            yield text
    else:
        with open(path, "w", encoding="utf-8", newline="") as handle:
            yield handle


def write_edge_csv(
    path: str | Path,
    time_ms: npt.ArrayLike,
    event_names: Sequence[str] | npt.NDArray[Any],
    actor: npt.ArrayLike,
    target: npt.ArrayLike,
    event_ids: Sequence[str] | npt.NDArray[Any] | None = None,
) -> Path:
    """Write an edge CSV (gzip if ``path`` ends in .gz) and return its path.

    ``time_ms``, ``actor``, ``target``: integers, shape (n,); ``event_names``:
    names from ``EDGE_EVENT_NAMES``; ``event_ids``: str, shape (n,), or None
    for a file without an event_id column. Rows are written in the order
    given; nothing is validated here (the reader does that)."""
    path = Path(path)
    columns: list[list[Any]] = [
        np.asarray(time_ms, np.int64).tolist(),
        list(event_names),
        np.asarray(actor, np.int64).tolist(),
        np.asarray(target, np.int64).tolist(),
    ]
    header = list(EDGE_COLUMNS)
    if event_ids is not None:
        columns.append(list(event_ids))
        header.append("event_id")
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ValueError(f"write_edge_csv: columns differ in length: {[len(c) for c in columns]}")
    with _open_write(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(*columns))
    return path


def write_edge_parquet(
    path: str | Path,
    time_ms: npt.ArrayLike,
    event_names: Sequence[str] | npt.NDArray[Any],
    actor: npt.ArrayLike,
    target: npt.ArrayLike,
    event_ids: Sequence[str] | npt.NDArray[Any] | None = None,
    *,
    row_group_rows: int = 1 << 20,
) -> Path:
    """Write an edge Parquet file and return its path: the edge CSV's
    columns (``write_edge_csv`` takes the same arguments), typed: time_ms,
    actor_id, target_id int64, event dictionary-encoded string, event_id
    string (the column is left out when ``event_ids`` is None). Row groups
    of ``row_group_rows`` rows let readers stream it. Nothing is validated
    here (the reader does that)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    columns: dict[str, Any] = {
        "time_ms": pa.array(np.asarray(time_ms, np.int64)),
        "event": pa.array(np.asarray(event_names, object), pa.string()).dictionary_encode(),
        "actor_id": pa.array(np.asarray(actor, np.int64)),
        "target_id": pa.array(np.asarray(target, np.int64)),
    }
    if event_ids is not None:
        columns["event_id"] = pa.array(np.asarray(event_ids, object), pa.string())
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"write_edge_parquet: columns differ in length: {[len(c) for c in columns.values()]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_rows, compression="zstd")
    return path


def _enum_text(value: AgeBand | MessagePrivacy | AccountState | AgeAssurance | None) -> str:
    if value is None:
        return ""
    return str(_PROTO_NAME[type(value)](int(value)))


def write_profile_csv(path: str | Path, profiles: Iterable[Profile]) -> Path:
    """Write a profile CSV with every column (gzip if ``path`` ends in .gz)
    and return its path. Enums are written as their proto names; fields that
    are None are written as empty cells ("not carried")."""
    path = Path(path)
    with _open_write(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PROFILE_COLUMNS + PROFILE_OPTIONAL_COLUMNS)
        writer.writerows(
            (
                p.user_id,
                _enum_text(p.age_band),
                _enum_text(p.message_privacy),
                _enum_text(p.account_state),
                p.region_code or "",
                "" if p.discoverable is None else ("true" if p.discoverable else "false"),
                _enum_text(p.age_assurance),
            )
            for p in profiles
        )
    return path
