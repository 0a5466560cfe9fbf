"""Edge CSVs read column-wise with pyarrow.

The per-line reader (``csv_lines``) stays the definition of what a
line means. This module is a fast path that must give the same table and
the same ``file:line: reason`` for every bad line:

- Cells are parsed by pyarrow, checked with the array forms of the rules
  (``graph.events.event_times`` / ``invalid_events``), and every row those
  flag, or whose cells are not plain decimal integers, goes through the
  per-line reader's own row function (``edge_row``), which accepts it or
  says why not.
- Line numbers are counted from the bytes: a file is cut into chunks at
  newlines, and a chunk with blank lines or rows of the wrong width is
  scanned with numpy to map rows to lines.
- What pyarrow cannot number exactly (a quote anywhere, which may hide a
  newline inside a cell; NUL bytes; a bare carriage return) or refuses to
  parse (bytes that are not UTF-8) makes ``read_edge_csv`` return None: the
  caller then reads the file line by line, so messages stay exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from ..errors import EventLogError
from ..table import EventTable
from .columnar import Chunk, Rejects, checked_rows, event_name_index
from .common import BadLines, Progress, RowError, csv_line, open_bytes
from .csv_lines import EdgeLayout, csv_kind, edge_row

__all__ = ["read_edge_csv"]

# Big enough that per-chunk overhead vanishes, small enough that a chunk's
# string columns stay well under a gigabyte.
CHUNK_BYTES = 64 << 20
# Decimal integers Python's int() and pyarrow read alike; anything else
# (signs, underscores, other digits, whitespace, overflow) takes the row path.
_PLAIN_INT = r"^-?[0-9]{1,18}$"
# pyarrow's int64 parser also takes hexadecimal (0x1F) where int() does not.
_HEX_PREFIXES = (b"0x", b"0X")


def _line_chunks(stream: IO[bytes], head: bytes, chunk_bytes: int) -> Iterator[bytes]:
    """``head`` and the rest of the stream in chunks that end at a newline
    (the last one may not)."""
    pending = head
    while True:
        cut = pending.rfind(b"\n")
        if cut >= 0:
            yield pending[: cut + 1]
            pending = pending[cut + 1 :]
        block = stream.read(chunk_bytes)
        if not block:
            break
        pending += block
    if pending:
        yield pending


def read_edge_csv(
    path: Path, label: str, now: float, max_future_s: float, bad_lines: BadLines, progress: Progress | None,
    *, chunk_bytes: int = CHUNK_BYTES,
) -> EventTable | None:
    """The edge CSV at ``path`` (gzip if .gz) as an EventTable, bad lines
    handed to ``bad_lines``; None when the file must be read line by line
    instead (see the module docstring): a profile CSV, quotes, NUL bytes,
    bare carriage returns, undecodable bytes, a header pyarrow cannot take
    as it is. Header errors raise EventLogError as the line reader would."""
    size = path.stat().st_size
    try:
        with open_bytes(path) as (stream, raw):
            first = stream.read(chunk_bytes)
            while b"\n" not in first and (more := stream.read(chunk_bytes)):
                first += more
            if not first:
                return None  # the line reader says "empty file"
            end = first.find(b"\n")
            if end < 0:
                end = len(first)  # a header and no line break
            header = _plain_header(first[:end])
            if header is None or csv_kind(header, label) != "edge":
                return None
            layout = EdgeLayout.of(header)
            header_line = csv_line(header)
            pieces: list[EventTable] = []
            line = 1  # the last line read
            for chunk in _line_chunks(stream, first[end + 1 :], chunk_bytes):
                n_lines = _line_count(chunk)
                parsed = _edge_chunk(chunk, line + 1, n_lines, header, layout, label, now, max_future_s)
                if parsed is None:
                    return None
                rows, rejects = parsed
                rejects.report(bad_lines, header_line)
                pieces.append(rows.kept())
                line += n_lines
                if progress is not None:
                    progress(raw.tell(), size, "B")
    except (OSError, EOFError, pa.ArrowException):
        # A corrupt or truncated .gz: the line reader says on which line.
        return None
    return EventTable.concat(pieces, consume=True)


def _line_count(chunk: bytes) -> int:
    return chunk.count(b"\n") + (not chunk.endswith(b"\n"))


def _plain_header(data: bytes) -> list[str] | None:
    """The header's cells, or None if the csv module might read it
    differently (quotes, NUL, bare CR) or it is not UTF-8."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    text = text.removesuffix("\r")
    if any(c in text for c in '"\r\0'):
        return None
    return text.split(",")


def _needs_line_reader(chunk: bytes) -> bool:
    if b'"' in chunk or b"\0" in chunk:
        return True
    if b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n"):
        return True
    if not chunk.isascii():
        # The line reader says where decoding failed, in its own words.
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return True
    return False


def _may_hold_hex(chunk: bytes) -> bool:
    # No event name has an x: one byte search (memchr) settles most chunks.
    if b"x" not in chunk and b"X" not in chunk:
        return False
    return any(prefix in chunk for prefix in _HEX_PREFIXES)


def _parse(chunk: bytes, header: list[str], layout: EdgeLayout, typed: bool) -> tuple[pa.Table, int] | None:
    """pyarrow's table of the chunk and how many rows it skipped for a
    wrong number of cells; None if pyarrow refuses the chunk."""
    skipped = 0

    def skip(_row: object) -> str:
        nonlocal skipped
        skipped += 1
        return "skip"

    if typed:
        ints = pa.int64()
        types = {c: pa.string() for c in header} | {
            header[layout.time]: ints, header[layout.actor]: ints, header[layout.target]: ints,
            header[layout.event]: pa.dictionary(pa.int32(), pa.string()),
        }
    else:
        types = {c: pa.string() for c in header}
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(chunk),
            read_options=pa_csv.ReadOptions(column_names=header, block_size=16 << 20),
            parse_options=pa_csv.ParseOptions(quote_char=False, double_quote=False, invalid_row_handler=skip),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid:
        return None
    return table, skipped


@dataclass
class _Lines:
    """Where each physical line of a chunk starts and ends (end excludes
    the line break), int64 shape (n_lines,)."""

    start: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]

    @staticmethod
    def of(chunk: bytes) -> _Lines:
        data = np.frombuffer(chunk, np.uint8)
        breaks = np.flatnonzero(data == ord("\n"))
        start = np.concatenate(([0], breaks + 1))
        end = np.concatenate((breaks, [len(chunk)]))
        if start[-1] == len(chunk):  # the chunk ends with a newline
            start, end = start[:-1], end[:-1]
        has_cr = (end > start) & (data[np.maximum(end - 1, 0)] == ord("\r"))
        return _Lines(start, end - has_cr)

    def text(self, chunk: bytes, i: int) -> str:
        return chunk[self.start[i] : self.end[i]].decode("utf-8")


def _row_lines(
    chunk: bytes, width: int, lines: _Lines
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(index into ``lines`` of each row pyarrow kept, indices of non-blank
    lines with the wrong number of cells). Blank lines hold no row."""
    data = np.frombuffer(chunk, np.uint8)
    commas = np.flatnonzero(data == ord(","))
    cells = np.searchsorted(commas, lines.end) - np.searchsorted(commas, lines.start) + 1
    blank = lines.end == lines.start
    wrong = ~blank & (cells != width)
    return np.flatnonzero(~blank & ~wrong), np.flatnonzero(wrong)


def _edge_chunk(
    chunk: bytes, first_line: int, n_lines: int, header: list[str], layout: EdgeLayout, label: str, now: float,
    max_future_s: float,
) -> tuple[Chunk, Rejects] | None:
    """The rows of a chunk of ``n_lines`` lines from ``first_line`` on, and
    its bad lines; None when the chunk needs the line reader."""
    if _needs_line_reader(chunk):
        return None
    typed = not _may_hold_hex(chunk)
    parsed = _parse(chunk, header, layout, typed=typed)
    if parsed is None and typed:
        typed = False
        parsed = _parse(chunk, header, layout, typed=False)
    if parsed is None:
        return None
    table, skipped = parsed
    n = table.num_rows
    lines: _Lines | None = None
    rejects = Rejects()
    # pyarrow drops blank lines and the rows it skipped: only then do rows
    # and lines part ways.
    if skipped or n != n_lines:
        lines = _Lines.of(chunk)
        row_line_index, wrong_width = _row_lines(chunk, len(header), lines)
        if len(row_line_index) != n or len(wrong_width) != skipped:
            return None  # pyarrow saw the rows differently: trust the line reader
        for i in wrong_width:
            text = lines.text(chunk, int(i))
            rejects.add(EventLogError(label, first_line + int(i),
                                      f"expected {len(header)} cells ({','.join(header)}), "
                                      f"got {text.count(',') + 1}"), text)
    else:
        row_line_index = np.arange(n, dtype=np.int64)

    time_ms, odd_time = _int_column(table.column(layout.time), typed)
    actor, odd_actor = _int_column(table.column(layout.actor), typed)
    target, odd_target = _int_column(table.column(layout.target), typed)
    name_index = event_name_index(table.column(layout.event))
    ids = table.column(layout.event_id) if layout.event_id is not None else None
    rows, flagged = checked_rows(time_ms, actor, target, name_index, ids, odd_time | odd_actor | odd_target,
                                  now, max_future_s)
    if len(flagged):
        if lines is None:
            lines = _Lines.of(chunk)
        for i in flagged:
            line_index = int(row_line_index[i])
            text = lines.text(chunk, line_index)
            try:
                row = edge_row(text.split(","), layout, now, max_future_s)
            except RowError as err:
                rejects.add(EventLogError(label, first_line + line_index, err.reason), text)
                rows.keep[i] = False
                continue
            rows.set_row(int(i), row)  # a cell only the row reader takes: "+5", "1_000"
    return rows, rejects


def _int_column(column: pa.ChunkedArray, typed: bool) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(values int64 shape (n,), rows whose cell is not a plain decimal
    integer and so goes to the row reader; their value is 0)."""
    if typed:
        return column.to_numpy(), np.zeros(len(column), np.bool_)
    plain = pc.match_substring_regex(column, _PLAIN_INT)
    values = pc.cast(pc.if_else(plain, column, pa.scalar("0")), pa.int64())
    return values.to_numpy(), ~plain.to_numpy(zero_copy_only=False)
