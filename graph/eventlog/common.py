"""What the event-log readers share: the column names and event names of
the CSV forms, the bad-line budget (``BadLines`` / ``RejectedLine``),
progress, opening a file (gzip by its ``.gz`` suffix), the cursor that
places an I/O error on its line, the reasons a row is bad, and the profile
enum columns' spellings.

Nothing here imports pyarrow: ``graph.rebuild`` and the CLI import this
module whatever the format of the files they read.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Generic, TypeVar, cast

from google.protobuf.descriptor import EnumDescriptor

from contactgraph.v1 import user_profile_pb2 as profile_pb

from ..errors import EventLogError, InvalidEvent, TooManyBadLines
from ..model import (
    AccountState,
    AgeAssurance,
    AgeBand,
    EventKind,
    InteractionType,
    MessagePrivacy,
    ReportCategory,
    Surface,
)

__all__ = [
    "AGE_BANDS",
    "ASSURANCES",
    "EDGE_COLUMNS",
    "EDGE_EVENT_NAMES",
    "EDGE_OPTIONAL_COLUMNS",
    "JSON_SUFFIXES",
    "PARQUET_SUFFIXES",
    "PRIVACIES",
    "PROFILE_COLUMNS",
    "PROFILE_OPTIONAL_COLUMNS",
    "PROTO_NAME",
    "STATES",
    "TELL_EVERY",
    "BadLines",
    "Cursor",
    "EnumColumn",
    "ProfileEnum",
    "Progress",
    "RejectedLine",
    "RowError",
    "csv_line",
    "format_suffix",
    "invalid_reason",
    "is_gzip",
    "open_bytes",
    "open_text",
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

ProfileEnum = TypeVar("ProfileEnum", AgeBand, MessagePrivacy, AccountState, AgeAssurance)


@dataclass(frozen=True)
class EnumColumn(Generic[ProfileEnum]):
    """How a profile CSV enum column is read: upper-case spelling -> value
    (None for the UNSPECIFIED value, which a cell may not name: empty means
    unset) and the hint an error shows."""

    names: dict[str, ProfileEnum | None]
    hint: str


def _enum_column(descriptor: EnumDescriptor, model: type[ProfileEnum]) -> EnumColumn[ProfileEnum]:
    # Built from the proto descriptor so that the accepted names follow the
    # API; the model's own member names (AGE_13_15) are accepted too.
    prefix = descriptor.values[0].name.removesuffix("UNSPECIFIED")
    names: dict[str, ProfileEnum | None] = {}
    for value in descriptor.values:
        member = model(value.number) if value.number else None
        names[value.name] = member
        names[value.name.removeprefix(prefix)] = member
    for member in model:
        names.setdefault(member.name, member if member.value else None)
    valid = ", ".join(v.name for v in descriptor.values if v.number)
    return EnumColumn(names, f"expected one of {valid} (or without {prefix}), or empty")


AGE_BANDS = _enum_column(profile_pb.DESCRIPTOR.enum_types_by_name["AgeBand"], AgeBand)
PRIVACIES = _enum_column(profile_pb.DESCRIPTOR.enum_types_by_name["MessagePrivacy"], MessagePrivacy)
STATES = _enum_column(profile_pb.DESCRIPTOR.enum_types_by_name["AccountState"], AccountState)
ASSURANCES = _enum_column(profile_pb.DESCRIPTOR.enum_types_by_name["AgeAssurance"], AgeAssurance)
PROTO_NAME = {
    AgeBand: profile_pb.AgeBand.Name,
    MessagePrivacy: profile_pb.MessagePrivacy.Name,
    AccountState: profile_pb.AccountState.Name,
    AgeAssurance: profile_pb.AgeAssurance.Name,
}


def is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def format_suffix(path: Path) -> str:
    """The suffix that names the format, looking through a ``.gz``."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
    return Path(name).suffix


@contextmanager
def open_text(path: Path) -> Iterator[tuple[IO[str], IO[bytes]]]:
    """(text, file on disk): the second tells progress."""
    # newline="" because the csv module does its own line splitting (quoted
    # cells may hold newlines); utf-8-sig drops the BOM spreadsheet tools
    # write, which would otherwise become part of the first column's name.
    with open(path, "rb") as raw:
        if is_gzip(path):
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped, io.TextIOWrapper(
                unzipped, encoding="utf-8-sig", newline=""
            ) as handle:
                yield handle, raw
        else:
            with io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
                yield handle, raw


@contextmanager
def open_bytes(path: Path) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """(decompressed stream, file on disk): the second tells progress."""
    with open(path, "rb") as raw:
        if is_gzip(path):
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield cast(IO[bytes], unzipped), raw
        else:
            yield raw, raw


def invalid_reason(err: InvalidEvent, *, rename: dict[str, str] | None = None) -> str:
    """An InvalidEvent as a reason that names the offending field."""
    message = str(err)
    field = (rename or {}).get(err.field, err.field)
    if field and field not in message:
        return f"{field}: {message}"
    return message


class Cursor:
    """The last line a reader got through, so that an I/O error raised deep
    inside the csv or gzip module can still be reported as ``file:line``;
    ``tell`` reports progress (every ``TELL_EVERY`` lines)."""

    __slots__ = ("line", "tell")

    def __init__(self) -> None:
        self.line = 0
        self.tell: Callable[[], None] = lambda: None


TELL_EVERY = 1 << 16


class RowError(Exception):
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

    def held(self) -> _HeldBadLines:
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


def csv_line(cells: Sequence[str]) -> str:
    """Cells as one CSV line, without the line break."""
    out = io.StringIO()
    # The terminator decides which cells get quoted: with "\r\n" a cell
    # holding either character is quoted and so stays one cell.
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue().removesuffix("\r\n")
