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
  schema (``json_columns``) built from the ``GraphEvent`` descriptor: ``eventId`` and
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
from typing import IO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.json as pa_json
from google.protobuf import json_format

from contactgraph.v1 import graph_events_pb2 as pb

from ..errors import EventLogError, InvalidEvent
from ..events import event_from_proto
from ..model import Event, Profile
from ..table import COLUMNS, EventTable
from .common import TELL_EVERY, BadLines, Cursor, Progress, invalid_reason, open_bytes
from .json_columns import PARSE_OPTIONS, JsonColumns

__all__ = ["read_json_line_by_line", "read_json_lines"]

CHUNK_BYTES = 16 << 20
# The line reader reads at most a few hundred KiB past the line it is on
# (TextIOWrapper's 8 KiB chunks over an 8-128 KiB buffer).
LOOKAHEAD_BYTES = 1 << 20
# Lines sent to the line reader at once after a refusal at the very start
# of a run doubles up to this (a file pyarrow refuses throughout).
_MAX_WINDOW = 4096

_BOM = codecs.BOM_UTF8


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
            # As the column-wise reader (json_columns): a line without
            # eventTime happened at the rebuild's ``now``.
            events.append(event_from_proto(msg, now, max_future_s, require_time=False))
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
    def of(chunk: bytes) -> _Lines:
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
        counts: npt.NDArray[np.int64] = (np.searchsorted(marks, self.end[lines])
                                          - np.searchsorted(marks, self.start[lines]))
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
            self.line += (data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
                          + (not data.endswith((b"\n", b"\r"))))
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
            for b, last in zip(first, past, strict=True):
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
                parse_options=PARSE_OPTIONS,
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as err:
            message = str(err)
            _, found, row = message.rpartition(" in row ")
            return int(row) if found and row.isdigit() else None

    def _columns(self, table: pa.Table, rows: npt.NDArray[np.intp]) -> None:
        """The parsed rows (row i from line ``rows[i]`` of the chunk) as a
        piece; flagged rows through the line reader."""
        lines = self._lines
        columns = JsonColumns.of(table, self.now, self.max_future_s)
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
