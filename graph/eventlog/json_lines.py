"""JSON lines event logs read column-wise with pyarrow.

The line reader (``read_json_line_by_line`` below: protobuf's
``json_format.Parse`` and ``event_from_proto`` per line) stays the
definition of what a line means. This module is a fast path that gives the
same table and the same ``file:line: reason`` for every bad line, in the
same order:

- The file is read in chunks that end at a newline; each chunk's lines are
  located with numpy. A line that is blank (spaces and tabs only) holds no
  event; a line that is not ``{...}`` (give or take spaces and tabs) or
  holds a control character goes to the line reader as it is.
- Runs of ``{...}`` lines are parsed by ``pyarrow.json`` against an explicit
  schema built from the ``GraphEvent`` descriptor: ``eventId`` and
  ``eventTime`` strings and one struct of strings per kind pyarrow can take
  (every kind but ``profile``). Unknown keys are ignored by pyarrow, but a
  line whose count of ``"`` differs from the count its parsed values
  account for (an unknown key, an explicit null, a duplicate) is flagged.
  Pyarrow sees the rows line by line only if each of those lines holds one
  object: the row count must equal the line count, or the run is split.
- Rows are checked with array forms of the rules: exactly one kind, ids
  that are plain decimal int64 strings, enum values by name, timestamps
  of the form ``YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)`` read with
  numpy, then ``event_times`` / ``invalid_events``. Every row any check
  flags (and every line holding a backslash) goes through the line reader
  alone, which keeps it or says why not.
- A run pyarrow refuses (a number where a string is expected, bad JSON)
  is cut at the row its error names (or halved when it names none): the
  rows before it are parsed again, the named line goes to the line reader.
- A bare carriage return (a line break for the line reader, not for
  pyarrow) sends its whole chunk to the line reader. Bytes that are not
  UTF-8 and a corrupt or truncated gzip make ``read_json_lines`` return
  None: the caller reads the file line by line, which says on which line
  reading failed. Chunks are checked ``LOOKAHEAD_BYTES`` ahead, further
  than the line reader reads ahead, so no bad line is reported here that
  the line reader would not have reached.
"""

from __future__ import annotations

import codecs
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from contactgraph.v1 import graph_events_pb2 as pb

from ..errors import EventLogError, InvalidEvent
from ..events import event_from_proto, event_times, invalid_events, kind_field
from ..model import Event, EventKind, Profile
from ..table import COLUMNS, EventColumns, EventTable
from .common import TELL_EVERY, BadLines, Cursor, Progress, invalid_reason, open_bytes

__all__ = ["read_json_line_by_line", "read_json_lines"]

CHUNK_BYTES = 16 << 20
# The line reader reads at most a few hundred KiB past the line it is on
# (TextIOWrapper's 8 KiB chunks over an 8-128 KiB buffer).
LOOKAHEAD_BYTES = 1 << 20
# Lines sent to the line reader at once after a refusal at the very start
# of a run doubles up to this (a file pyarrow refuses throughout).
_MAX_WINDOW = 4096

_BOM = codecs.BOM_UTF8
_INT64_MAX = str(2**63 - 1)
# Timestamp.FromJsonString's range of seconds.
_TS_MIN = -62_135_596_800
_TS_MAX = 253_402_300_799


@dataclass(frozen=True)
class _Kind:
    """A GraphEvent oneof member pyarrow can read: its JSON key, the kind,
    the JSON keys of its actor, target (None: no target, e.g. erase_user)
    and enum detail (None: no detail), and the enum's name -> number."""

    key: str
    kind: EventKind
    actor: str
    target: str | None
    detail: str | None
    names: dict[str, int]


def _kinds() -> tuple[_Kind, ...]:
    """Every kind whose message holds only int64 ids and at most one enum,
    from the descriptor so that JSON keys follow the API."""
    kinds: list[_Kind] = []
    for kind in EventKind:
        member = pb.GraphEvent.DESCRIPTOR.fields_by_name[kind_field(kind)]
        ids: dict[str, str] = {}
        enums: list[FieldDescriptor] = []
        plain = True
        for sub in member.message_type.fields:
            if sub.type == FieldDescriptor.TYPE_INT64 and sub.name in ("actor_id", "target_id", "user_id"):
                ids[sub.name] = sub.json_name
            elif sub.type == FieldDescriptor.TYPE_ENUM and not sub.is_repeated:
                enums.append(sub)
            else:
                plain = False
        actor = ids.get("actor_id", ids.get("user_id"))
        if not plain or actor is None or len(enums) > 1 or ("user_id" in ids) == ("target_id" in ids):
            continue  # profile: its rows go to the line reader
        detail = enums[0] if enums else None
        kinds.append(_Kind(
            member.json_name, kind, actor, ids.get("target_id"), detail.json_name if detail else None,
            {v.name: v.number for v in detail.enum_type.values} if detail else {},
        ))
    return tuple(kinds)


_KINDS = _kinds()
_S = pa.string()
_SCHEMA = pa.schema(
    [("eventId", _S), ("eventTime", _S)]
    + [(k.key, pa.struct([(name, _S) for name in (k.actor, k.target, k.detail) if name])) for k in _KINDS]
)
_PARSE = pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")


def read_json_line_by_line(
    handle: IO[str], label: str, now: float, max_future_s: float, cursor: Cursor, bad_lines: BadLines
) -> EventTable:
    """The line reader: one ``json_format.Parse`` and ``event_from_proto``
    per line, the definition of what a line means. ``read_json_lines``
    falls back on it; line numbers count from 1 in ``handle``."""
    events: list[Event] = []
    for line_no, text in enumerate(handle, start=1):
        cursor.line = line_no
        if line_no % TELL_EVERY == 0:
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
            bad_lines.reject(EventLogError(label, line_no, invalid_reason(err)), text.rstrip("\r\n"), "")
    return EventTable.from_events(events)


class _Unreadable(Exception):
    """The file cannot be read or decoded: the line reader must say where."""


def read_json_lines(
    path: Path, label: str, now: float, max_future_s: float, bad_lines: BadLines, progress: Progress | None,
    *, chunk_bytes: int = CHUNK_BYTES,
) -> EventTable | None:
    """The JSON lines file at ``path`` (gzip if .gz) as an EventTable, bad
    lines handed to ``bad_lines`` (see ``graph.eventlog``); None when the
    file must be read line by line instead: it cannot be opened, holds bytes
    that are not UTF-8, or is a corrupt or truncated gzip."""
    try:
        size = path.stat().st_size
        with open_bytes(path) as (stream, raw):
            reader = _Reader(label, now, max_future_s, bad_lines)
            for chunk in _chunks(stream, chunk_bytes, LOOKAHEAD_BYTES):
                reader.chunk(chunk)
                if progress is not None:
                    progress(raw.tell(), size, "B")
    except (_Unreadable, OSError):
        return None
    return reader.table()


def _chunks(stream: IO[bytes], chunk_bytes: int, lookahead: int) -> Iterator[bytes]:
    """The stream (less a leading BOM) in chunks of about ``chunk_bytes``
    that end at a newline (the last one may not). Before a chunk is
    yielded, ``lookahead`` bytes past it (or all) are read and found to be
    UTF-8; raises _Unreadable otherwise."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buf = b""
    eof = False

    def read() -> None:
        nonlocal buf, eof
        try:
            block = stream.read(chunk_bytes)
            if not block:
                eof = True
                decoder.decode(b"", final=True)
                return
            if not (block.isascii() and not decoder.getstate()[0]):
                decoder.decode(block)
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
            raise _Unreadable(str(err)) from err
        buf += block

    while not eof and len(buf) < len(_BOM):
        read()
    if buf.startswith(_BOM):  # utf-8-sig drops it
        buf = buf[len(_BOM):]
    while True:
        while not eof and len(buf) < chunk_bytes:
            read()
        if not buf:
            return
        if eof and len(buf) <= chunk_bytes:
            cut = len(buf)
        else:
            cut = buf.rfind(b"\n", 0, chunk_bytes) + 1
            searched = chunk_bytes
            while not cut:  # a line longer than a chunk
                found = buf.find(b"\n", searched)
                if found >= 0:
                    cut = found + 1
                elif eof:
                    cut = len(buf)
                else:
                    searched = len(buf)
                    read()
        while not eof and len(buf) < cut + lookahead:
            read()
        chunk, buf = buf[:cut], buf[cut:]
        yield chunk


class _Shifted(BadLines):
    """Hands rejections on to ``target`` with line numbers moved on by
    ``by``: the line reader run on part of a file counts from 1."""

    def __init__(self, target: BadLines, by: int) -> None:
        super().__init__()
        self._target = target
        self._by = by

    def reject(self, error: EventLogError, text: str, header: str) -> None:
        self._target.reject(EventLogError(error.path, error.line + self._by, error.reason), text, header)


@dataclass
class _Lines:
    """The physical lines of a chunk, numpy arrays of shape (n_lines,):
    where each starts (``start``, int64) and where its text ends
    (``end``, int64, before the line break); ``blank`` (spaces and tabs
    only: no event), ``odd`` (not a ``{...}`` line, or holds a control
    character: the line reader's) and ``suspect`` (holds a backslash: its
    row goes to the line reader)."""

    start: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]
    blank: npt.NDArray[np.bool_]
    odd: npt.NDArray[np.bool_]
    suspect: npt.NDArray[np.bool_]
    marks: npt.NDArray[np.intp] | None = None

    @staticmethod
    def of(chunk: bytes) -> "_Lines":
        data = np.frombuffer(chunk, np.uint8)
        breaks = np.flatnonzero(data == ord("\n"))
        start = np.concatenate(([0], breaks + 1)).astype(np.int64)
        end = np.concatenate((breaks, [len(chunk)])).astype(np.int64)
        if start[-1] == len(chunk):  # the chunk ends with a newline
            start, end = start[:-1], end[:-1]
        # Only CRLF reaches here (a bare CR sends the chunk to the line reader).
        end -= (end > start) & (data[np.maximum(end - 1, 0)] == ord("\r"))
        empty = end == start
        plain = ~empty & (data[np.minimum(start, len(chunk) - 1)] == ord("{")) & (data[end - 1] == ord("}"))
        blank = empty.copy()
        odd = np.zeros(start.shape[0], np.bool_)
        for i in np.flatnonzero(~empty & ~plain).tolist():
            text = chunk[start[i] : end[i]].strip(b" \t")
            if not text:
                blank[i] = True
            elif not (text.startswith(b"{") and text.endswith(b"}")):
                odd[i] = True
        controls = int(np.count_nonzero(data < 0x20))
        if controls > breaks.shape[0] and controls > breaks.shape[0] + chunk.count(b"\r") + chunk.count(b"\t"):
            at = np.flatnonzero((data < 0x20) & (data != ord("\n")) & (data != ord("\r")) & (data != ord("\t")))
            odd[np.searchsorted(start, at, side="right") - 1] = True
        suspect = np.zeros(start.shape[0], np.bool_)
        if b"\\" in chunk:
            at = np.flatnonzero(data == ord("\\"))
            suspect[np.searchsorted(start, at, side="right") - 1] = True
        return _Lines(start, end, blank, odd & ~blank, suspect)

    def quotes(self, chunk: bytes, lines: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        """How many ``"`` each of ``lines`` holds, int64 shape (len(lines),)."""
        if self.marks is None:  # where the quotes are, found once per chunk
            self.marks = np.flatnonzero(np.frombuffer(chunk, np.uint8) == ord('"'))
        marks = self.marks
        counts: npt.NDArray[np.int64] = np.searchsorted(marks, self.end[lines]) - np.searchsorted(marks, self.start[lines])
        return counts


class _Reader:
    """Reads chunks in order; the events so far are ``pieces``."""

    def __init__(self, label: str, now: float, max_future_s: float, bad_lines: BadLines) -> None:
        self.label = label
        self.now = now
        self.max_future_s = max_future_s
        self.bad_lines = bad_lines
        self.line = 0  # lines read so far
        self.pieces: list[EventTable] = []
        # Set per chunk.
        self._data = b""
        self._buffer = pa.py_buffer(b"")
        self._lines: _Lines

    def table(self) -> EventTable:
        return EventTable.concat(self.pieces, consume=True)

    def chunk(self, data: bytes) -> None:
        if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
            self._line_reader(data.decode("utf-8"), self.line + 1)
            self.line += data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") + (not data.endswith((b"\n", b"\r")))
            return
        self._data = data
        self._buffer = pa.py_buffer(data)
        lines = self._lines = _Lines.of(data)
        n = lines.start.shape[0]
        a = 0
        odd = np.flatnonzero(lines.odd)
        if odd.shape[0]:
            # Runs of consecutive odd lines go to the line reader at once.
            first = odd[np.concatenate(([True], np.diff(odd) > 1))].tolist()
            past = (odd[np.concatenate((np.diff(odd) > 1, [True]))] + 1).tolist()
            for b, last in zip(first, past):
                self._run(a, b)
                self._line_range(b, last)
                a = last
        self._run(a, n)
        self.line += n
        self._data = b""

    def _byte(self, line: int) -> int:
        """Where line ``line`` of the chunk starts (the chunk's end past the last)."""
        return int(self._lines.start[line]) if line < self._lines.start.shape[0] else len(self._data)

    def _line_reader(self, text: str, first_line: int) -> EventTable:
        table = read_json_line_by_line(io.StringIO(text, newline=""), self.label, self.now, self.max_future_s,
                                       Cursor(), _Shifted(self.bad_lines, first_line - 1))
        self.pieces.append(table)
        return table

    def _line_range(self, a: int, b: int) -> None:
        """Lines [a, b) of the chunk through the line reader."""
        if a < b:
            self._line_reader(self._data[self._byte(a) : self._byte(b)].decode("utf-8"), self.line + 1 + a)

    def _run(self, a: int, b: int) -> None:
        """Lines [a, b) of the chunk, none of them odd: column-wise where
        pyarrow takes them, else cut where it refused."""
        window = 1
        while a < b:
            rows = np.flatnonzero(~self._lines.blank[a:b]) + a  # the line of each row pyarrow will give
            if not rows.shape[0]:
                return
            parsed = self._parse(a, b)
            if isinstance(parsed, pa.Table) and parsed.num_rows == rows.shape[0]:
                self._columns(parsed, rows)
                return
            refused_row = parsed if isinstance(parsed, int) else None
            if refused_row is None or refused_row >= rows.shape[0]:
                # Several objects on a line, or no row named: halve.
                if b - a == 1:
                    self._line_range(a, b)
                else:
                    middle = (a + b) // 2
                    self._run(a, middle)
                    self._run(middle, b)
                return
            bad = int(rows[refused_row])
            if bad > a:
                self._run(a, bad)
                window = 1
            else:
                window = min(2 * window, _MAX_WINDOW)
            stop = min(bad + window, b)
            self._line_range(bad, stop)
            a = stop

    def _parse(self, a: int, b: int) -> pa.Table | int | None:
        """Pyarrow's table of lines [a, b), or the row it refused (None if
        its error names none)."""
        start, stop = self._byte(a), self._byte(b)
        try:
            return pa_json.read_json(
                pa.BufferReader(self._buffer.slice(start, stop - start)),
                read_options=pa_json.ReadOptions(use_threads=False, block_size=stop - start + 1),
                parse_options=_PARSE,
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as err:
            message = str(err)
            _, found, row = message.rpartition(" in row ")
            return int(row) if found and row.isdigit() else None

    def _columns(self, table: pa.Table, rows: npt.NDArray[np.intp]) -> None:
        """The parsed rows (row i from line ``rows[i]`` of the chunk) as a
        piece; flagged rows through the line reader."""
        lines = self._lines
        columns = _Columns.of(table, self.now, self.max_future_s)
        flagged = columns.odd | lines.suspect[rows]
        # Each row's strings are in its line, so a line holds at least the
        # quotes its row accounts for: equal sums mean equal on every line.
        first, last = int(rows[0]), int(rows[-1])
        if self._data.count(b'"', self._byte(first), self._byte(last + 1)) != int(columns.quotes.sum()):
            flagged |= columns.quotes != lines.quotes(self._data, rows)
        keep = np.ones(rows.shape[0], np.bool_)
        profiles: dict[int, Profile] = {}
        for i in np.flatnonzero(flagged).tolist():
            line = int(rows[i])
            text = self._data[self._byte(line) : self._byte(line + 1)].decode("utf-8")
            one = read_json_line_by_line(io.StringIO(text, newline=""), self.label, self.now, self.max_future_s,
                                         Cursor(), _Shifted(self.bad_lines, self.line + line))
            if not len(one):
                keep[i] = False
                continue
            columns.set_row(i, tuple(getattr(one, name)[0] for name in COLUMNS))
            if 0 in one.profiles:
                profiles[i] = one.profiles[0]
        self.pieces.append(columns.table(keep, profiles))


@dataclass
class _Columns(EventColumns):
    """A parsed table's rows as event columns, rows the array checks flag
    (``odd``) and the count of ``"`` each row's values account for
    (``quotes``)."""

    odd: npt.NDArray[np.bool_]
    quotes: npt.NDArray[np.int64]

    @staticmethod
    def of(table: pa.Table, now: float, max_future_s: float) -> "_Columns":
        n = table.num_rows
        event_id = _array(table, "eventId")
        event_time = _array(table, "eventTime")
        quotes = 4 * (_valid(event_id).astype(np.int64) + _valid(event_time))
        kind = np.zeros(n, np.uint8)
        actor = np.zeros(n, np.int64)
        target = np.zeros(n, np.int64)
        detail = np.zeros(n, np.int16)
        kinds_set = np.zeros(n, np.int64)
        odd = np.zeros(n, np.bool_)
        for k in _KINDS:
            body = _array(table, k.key)
            has = _valid(body)
            if not has.any():
                continue
            kinds_set += has
            quotes += 2 * has
            kind[has] = int(k.kind)
            values, ok = _int64s(pc.struct_field(body, k.actor))
            actor[has] = values[has]
            odd |= has & ~ok
            quotes += 4 * _valid(pc.struct_field(body, k.actor))
            if k.target is not None:
                values, ok = _int64s(pc.struct_field(body, k.target))
                target[has] = values[has]
                odd |= has & ~ok
                quotes += 4 * _valid(pc.struct_field(body, k.target))
            if k.detail is not None:
                codes, ok = _enum_codes(pc.struct_field(body, k.detail), k.names)
                detail[has] = codes[has]
                odd |= has & ~ok
                quotes += 4 * _valid(pc.struct_field(body, k.detail))
        odd |= kinds_set != 1
        seconds, nanos, stamp_ok = _timestamps(event_time)
        has_time = _valid(event_time)
        # As event_from_proto: seconds + nanos / 1e9, clamped by event_time.
        when, refused = event_times(seconds.astype(np.float64) + nanos / 1e9, now, max_future_s)
        time = np.where(has_time, when, now)
        odd |= has_time & (~stamp_ok | refused)
        ids = event_id.fill_null("")
        id_length = pc.utf8_length(ids).to_numpy(zero_copy_only=False)
        odd |= invalid_events(kind, actor, target, detail, id_length)
        return _Columns(time, kind, actor, target, detail, ids.to_numpy(zero_copy_only=False),
                        odd, quotes)

    def table(self, keep: npt.NDArray[np.bool_], profiles: dict[int, Profile]) -> EventTable:
        """The rows kept, with the profiles of kept rows renumbered."""
        out = self.rows(keep)
        if profiles:
            position = np.cumsum(keep) - 1
            out.profiles = {int(position[i]): p for i, p in profiles.items()}
        return out


def _array(table: pa.Table, name: str) -> Any:
    """One column as a single pyarrow Array."""
    return table.column(name).combine_chunks()


def _valid(array: Any) -> npt.NDArray[np.bool_]:
    return np.asarray(array.is_valid().to_numpy(zero_copy_only=False), np.bool_)


def _int64s(array: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(values, int64 shape (n,); rows whose string is a plain decimal
    int64, bool shape (n,)): what ``int()`` reads the same. Other rows
    (null, signs, spaces, too long) are 0 and go to the line reader."""
    length = pc.binary_length(array)
    ok = pc.and_(
        pc.ascii_is_decimal(array),
        pc.or_(pc.less_equal(length, 18), pc.and_(pc.equal(length, 19), pc.less_equal(array, _INT64_MAX))),
    ).fill_null(False)
    values = pc.cast(pc.if_else(ok, array, pa.scalar("0")), pa.int64())
    return values.to_numpy(zero_copy_only=False), np.asarray(ok.to_numpy(zero_copy_only=False), np.bool_)


def _enum_codes(array: Any, names: dict[str, int]) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.bool_]]:
    """(numbers of enum names, 0 where null, int16 shape (n,); rows that
    are null or a name, bool shape (n,)). Numbers written as strings ("1")
    and unknown names go to the line reader."""
    index = pc.index_in(array, value_set=pa.array(list(names), _S)).fill_null(-1).to_numpy(zero_copy_only=False)
    numbers = np.append(np.array(list(names.values()), np.int16), np.int16(0))
    present = _valid(array)
    return numbers[index], ~present | (index >= 0)


# Positions in "YYYY-MM-DDTHH:MM:SS" and what each holds.
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord("T"), 13: ord(":"), 16: ord(":")}
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
# The lengths of the plain form: 19 + fraction (0 or 2-10 with its ".") + zone (1 or 6).
_STAMP_LENGTHS = range(20, 36)


def _timestamps(array: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """RFC 3339 strings as Timestamp.FromJsonString reads them: (seconds,
    nanos, int64 shape (n,); rows of the plain form
    ``YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)`` with a valid date and
    time in Timestamp's range, bool shape (n,)). Other rows (nulls too) are
    not ok: the line reader has the last word on them. Rows are parsed in
    groups of one length, each a (rows, length) uint8 block of the bytes."""
    n = len(array)
    seconds = np.zeros(n, np.int64)
    nanos = np.zeros(n, np.int64)
    ok = np.zeros(n, np.bool_)
    buffers = array.buffers()
    if not n or buffers[2] is None:
        return seconds, nanos, ok
    offsets = np.frombuffer(buffers[1], np.int32, count=n + 1, offset=array.offset * 4).astype(np.int64)
    data = np.frombuffer(buffers[2], np.uint8)
    start, length = offsets[:-1], np.diff(offsets)
    length = np.where(_valid(array), length, 0)
    uniform = length[0] if (length == length[0]).all() else -1
    for size in _STAMP_LENGTHS:
        if uniform >= 0:
            if uniform != size:
                continue
            # One length throughout: the values lie back to back.
            rows = slice(None)
            block = data[start[0] : start[0] + n * size].reshape(n, size)
        else:
            at = np.flatnonzero(length == size)
            if not at.shape[0]:
                continue
            rows = at  # type: ignore[assignment]
            block = data[start[at][:, None] + np.arange(size)]
        seconds[rows], nanos[rows], ok[rows] = _stamp_block(block)
    return seconds, nanos, ok


def _stamp_block(block: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                         npt.NDArray[np.bool_]]:
    """``_timestamps`` of strings of one length: ``block`` uint8 shape
    (rows, length), 20 <= length <= 35."""
    size = block.shape[1]
    digit = block.astype(np.int64) - ord("0")
    is_digit = (digit >= 0) & (digit <= 9)
    ok = is_digit[:, _DIGITS].all(axis=1)
    for at, char in _SEPARATORS.items():
        ok &= block[:, at] == char

    def number(*at: int) -> npt.NDArray[np.int64]:
        out = np.zeros(block.shape[0], np.int64)
        for i in at:
            out = out * 10 + digit[:, i]
        return out

    def fraction(zone: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """(nanos, rows whose fraction is well formed) for a zone of ``zone``
        characters."""
        width = size - 19 - zone  # with its "."
        if width == 0:
            return np.zeros(block.shape[0], np.int64), np.ones(block.shape[0], np.bool_)
        if not 2 <= width <= 10:
            return np.zeros(block.shape[0], np.int64), np.zeros(block.shape[0], np.bool_)
        places = width - 1
        fine = (block[:, 19] == ord(".")) & is_digit[:, 20 : 20 + places].all(axis=1)
        # As many places as given, scaled to nanoseconds (".5" is 500000000).
        return number(*range(20, 20 + places)) * 10 ** (9 - places), fine

    zulu = block[:, size - 1] == ord("Z")
    nanos_zulu, fine_zulu = fraction(1)
    nanos_offset, fine_offset = fraction(6)
    sign = block[:, size - 6]
    offset_form = ((sign == ord("+")) | (sign == ord("-"))) & (block[:, size - 3] == ord(":")) & is_digit[
        :, [size - 5, size - 4, size - 2, size - 1]].all(axis=1)
    ok &= np.where(zulu, fine_zulu, offset_form & fine_offset)
    nanos = np.where(zulu, nanos_zulu, nanos_offset)
    # Timestamp.FromJsonString: "+HH:MM" is subtracted, "-HH:MM" added.
    shift = number(size - 5, size - 4) * 3600 + number(size - 2, size - 1) * 60
    shift = np.where(zulu, 0, np.where(sign == ord("+"), -shift, shift))
    year, month, day = number(0, 1, 2, 3), number(5, 6), number(8, 9)
    hour, minute, second = number(11, 12), number(14, 15), number(17, 18)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    month = np.where(month_ok, month, 1)
    ok &= (year >= 1) & month_ok & (day >= 1) & (day <= _MONTH_DAYS[month] + (leap & (month == 2)))
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second + shift
    ok &= (seconds >= _TS_MIN) & (seconds <= _TS_MAX)
    return seconds, nanos, ok


def _days_from_civil(year: npt.NDArray[np.int64], month: npt.NDArray[np.int64],
                     day: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Days since 1970-01-01 of proleptic Gregorian dates (year >= 0),
    int64 shape (n,); H. Hinnant's ``days_from_civil``."""
    y = year - (month <= 2)
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days: npt.NDArray[np.int64] = era * 146_097 + day_of_era - 719_468
    return days
