"""Bulk event logs read column-wise with pyarrow: edge CSVs and Parquet.

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

Parquet has rows, not lines: its bad rows are reported as ``file:row N``
(rows count from 1) and rejected rows are rendered as CSV lines of the
same form (edge or profile), so that they can be fixed and fed back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ..errors import EventLogError
from ..events import event_times, invalid_events
from ..model import EventKind, Profile
from ..table import EventColumns, EventTable
from .common import (
    EDGE_COLUMNS,
    EDGE_EVENT_NAMES,
    EDGE_OPTIONAL_COLUMNS,
    PROFILE_COLUMNS,
    PROFILE_OPTIONAL_COLUMNS,
    BadLines,
    Progress,
    RowError,
    csv_line,
    open_bytes,
)
from .csv_lines import EdgeLayout, csv_kind, edge_row, profile_row

__all__ = ["read_edge_csv", "read_parquet"]

# Big enough that per-chunk overhead vanishes, small enough that a chunk's
# string columns stay well under a gigabyte.
CHUNK_BYTES = 64 << 20
PARQUET_BATCH_ROWS = 1 << 20

_NAMES = list(EDGE_EVENT_NAMES)
_NAME_SET = pa.array(_NAMES, pa.string())
# Index into _NAMES -> kind / detail; the last slot (-1) is "unknown name".
_KIND_OF = np.array([int(k) for k, _ in EDGE_EVENT_NAMES.values()] + [0], np.uint8)
_DETAIL_OF = np.array([d for _, d in EDGE_EVENT_NAMES.values()] + [0], np.int16)
# float64 holds every integer up to 2**53 exactly, so time_ms / 1000.0
# matches Python's int / float division only below that.
_EXACT_MS = 2**53
# Decimal integers Python's int() and pyarrow read alike; anything else
# (signs, underscores, other digits, whitespace, overflow) takes the row path.
_PLAIN_INT = r"^-?[0-9]{1,18}$"
# pyarrow's int64 parser also takes hexadecimal (0x1F) where int() does not.
_HEX_PREFIXES = (b"0x", b"0X")


@dataclass
class _Chunk(EventColumns):
    """One chunk's rows and which of them are not rejected."""

    keep: npt.NDArray[np.bool_]

    def kept(self) -> EventTable:
        """The rows not rejected."""
        return self.rows(self.keep)


@dataclass
class _Rejects:
    """Bad lines of one chunk, reported in line order once the chunk is
    done (width errors and value errors are found in separate passes)."""

    items: list[tuple[int, EventLogError, str]] = field(default_factory=list)

    def add(self, error: EventLogError, text: str) -> None:
        self.items.append((error.line, error, text))

    def report(self, bad_lines: BadLines, header: str) -> None:
        for _, error, text in sorted(self.items, key=lambda item: item[0]):
            bad_lines.reject(error, text, header)


# --- edge CSV -------------------------------------------------------------------


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
    def of(chunk: bytes) -> "_Lines":
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
) -> tuple[_Chunk, _Rejects] | None:
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
    rejects = _Rejects()
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
    name_index = _name_index(table.column(layout.event))
    ids = table.column(layout.event_id) if layout.event_id is not None else None
    rows, flagged = _checked_rows(time_ms, actor, target, name_index, ids, odd_time | odd_actor | odd_target,
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


def _name_index(column: pa.ChunkedArray) -> npt.NDArray[np.intp]:
    """Index into EDGE_EVENT_NAMES of each row's event name, -1 unknown."""
    if pa.types.is_dictionary(column.type):
        parts: list[npt.NDArray[np.intp]] = []
        for chunk in column.chunks:
            of_value = pc.index_in(chunk.dictionary.cast(pa.string()), value_set=_NAME_SET)
            lut = np.append(of_value.fill_null(-1).to_numpy(zero_copy_only=False), -1)
            indices = chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            parts.append(lut[indices].astype(np.intp))
        if not parts:
            return np.zeros(0, np.intp)
        joined: npt.NDArray[np.intp] = np.concatenate(parts)
        return joined
    found = pc.index_in(column.cast(pa.string()), value_set=_NAME_SET)
    index: npt.NDArray[np.intp] = np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), np.intp)
    return index


# --- Parquet ----------------------------------------------------------------------


_PARQUET_INT = "an integer (int64)"


def _parquet_schema(schema: pa.Schema, label: str) -> tuple[str, list[str]]:
    """("edge" or "profile", the columns to read in CSV order); raises
    EventLogError (the file as a whole) for missing, unknown or mistyped
    columns."""
    names = list(schema.names)

    def fail(reason: str) -> EventLogError:
        return EventLogError(label, 0, reason, unit="row")

    if "user_id" in names:
        kind, required, optional = "profile", PROFILE_COLUMNS, PROFILE_OPTIONAL_COLUMNS
    else:
        kind, required, optional = "edge", EDGE_COLUMNS, EDGE_OPTIONAL_COLUMNS
    missing = [c for c in required if c not in names]
    if missing:
        raise fail(f"{kind} Parquet file is missing column(s) {', '.join(missing)} "
                   f"(expected {','.join(required)}[,{','.join(optional)}])")
    unknown = [c for c in names if c not in required and c not in optional]
    if unknown:
        raise fail(f"unknown column(s) {', '.join(map(repr, unknown))} in the {kind} Parquet file")
    for name in names:
        column_type = schema.field(name).type
        if pa.types.is_dictionary(column_type):
            column_type = column_type.value_type
        if name == "time_ms":
            ok = pa.types.is_integer(column_type) or pa.types.is_timestamp(column_type)
            want = "an integer (Unix milliseconds) or a timestamp"
        elif name in ("actor_id", "target_id", "user_id"):
            ok, want = pa.types.is_integer(column_type), _PARQUET_INT
        elif name == "discoverable":
            ok, want = pa.types.is_boolean(column_type) or _is_text(column_type), "a boolean or a string"
        else:
            ok, want = _is_text(column_type), "a string"
        # A column of nothing but nulls has the null type: its rows say why.
        if not ok and not pa.types.is_null(column_type):
            raise fail(f"column {name} has type {column_type}, expected {want}")
    return kind, [c for c in (*required, *optional) if c in names]


def _is_text(column_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(column_type) or pa.types.is_large_string(column_type))


def read_parquet(
    path: Path, label: str, now: float, max_future_s: float, bad_lines: BadLines, progress: Progress | None
) -> EventTable:
    """An edge or a profile Parquet file (told apart by a user_id column),
    read in record batches, as an EventTable.

    Edge: the edge CSV's columns, time_ms int64 Unix ms (or a timestamp),
    event string, actor_id / target_id int64, optional event_id string (null
    means ""). Profile: the profile CSV's columns, user_id int64, the enum
    columns and region_code strings spelt as in the CSV, discoverable
    boolean (or a string as in the CSV); nulls mean "not carried". Other
    nulls are bad rows. Bad rows go to ``bad_lines`` as ``file:row N:
    reason``, rendered as CSV lines of the same form."""
    done = 0
    try:
        parquet = pq.ParquetFile(path)
        kind, header = _parquet_schema(parquet.schema_arrow, label)
        total = parquet.metadata.num_rows
        header_line = csv_line(header)
        if kind == "edge":
            layout = EdgeLayout.of(header)
        pieces: list[EventTable] = []
        profiles: dict[int, Profile] = {}
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=header):
            if kind == "edge":
                rows, rejects = _parquet_batch(batch, done, header, layout, label, now, max_future_s)
            else:
                rows, rejects = _profile_batch(batch, done, header, label, now, profiles)
            rejects.report(bad_lines, header_line)
            pieces.append(rows.kept())
            done += batch.num_rows
            if progress is not None:
                progress(done, total, "rows")
    except (OSError, pa.ArrowException) as err:
        where = done + 1 if done else 0
        reason = " ".join(str(err).split())
        raise EventLogError(label, where, f"cannot read Parquet: {reason}", unit="row") from err
    table = EventTable.concat(pieces, consume=True)
    table.profiles = profiles
    return table


def _profile_batch(
    batch: pa.RecordBatch, offset: int, header: list[str], label: str, now: float, profiles: dict[int, Profile]
) -> tuple[_Chunk, _Rejects]:
    """Profile rows through the profile CSV's row function (profiles are
    one row per user: no need to go column-wise); kept profiles are added to
    ``profiles`` under their row in the table being built."""
    col = {name: i for i, name in enumerate(header)}
    n = batch.num_rows
    rejects = _Rejects()
    keep = np.ones(n, np.bool_)
    users = np.zeros(n, np.int64)
    for i, values in enumerate(zip(*(batch.column(j).to_pylist() for j in range(len(header))))):
        cells = ["" if v is None else ("true" if v else "false") if isinstance(v, bool) else str(v) for v in values]
        try:
            if values[col["user_id"]] is None:
                raise RowError("user_id is null")
            profile = profile_row(cells, col, now)
        except RowError as err:
            rejects.add(EventLogError(label, offset + i + 1, err.reason, unit="row"), csv_line(cells))
            keep[i] = False
            continue
        users[i] = profile.user_id
        profiles[len(profiles)] = profile  # every row kept is a profile: its row in the table
    return _Chunk(np.full(n, now, np.float64), np.full(n, int(EventKind.PROFILE), np.uint8), users,
                  np.zeros(n, np.int64), np.zeros(n, np.int16), np.full(n, "", object), keep), rejects


def _parquet_ints(column: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(int64 values with nulls as 0, rows needing the row reader: nulls and
    unsigned values beyond int64)."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("ms")).cast(pa.int64())
    elif pa.types.is_null(column.type):
        column = column.cast(pa.int64())
    odd = column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_uint64(column.type):
        raw = column.fill_null(0).to_numpy(zero_copy_only=False)
        too_big = raw > np.uint64(2**63 - 1)
        return np.where(too_big, 0, raw).astype(np.int64), odd | too_big
    return column.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False), odd


def _parquet_batch(
    batch: pa.RecordBatch, offset: int, header: list[str], layout: EdgeLayout, label: str, now: float,
    max_future_s: float,
) -> tuple[_Chunk, _Rejects]:
    time_ms, odd_time = _parquet_ints(batch.column(layout.time))
    actor, odd_actor = _parquet_ints(batch.column(layout.actor))
    target, odd_target = _parquet_ints(batch.column(layout.target))
    name_index = _name_index(pa.chunked_array([batch.column(layout.event)]))
    ids = batch.column(layout.event_id).cast(pa.string()).fill_null("") if layout.event_id is not None else None
    rows, flagged = _checked_rows(time_ms, actor, target, name_index, ids, odd_time | odd_actor | odd_target,
                                  now, max_future_s)
    rejects = _Rejects()
    columns = [batch.column(j) for j in range(len(header))]
    for i in flagged.tolist():
        cells = [_parquet_cell(column, i) for column in columns]
        null = [c for c, column in zip(header, columns) if c != "event_id" and not column[i].is_valid]
        try:
            if null:
                raise RowError(f"{null[0]} is null")
            row = edge_row(cells, layout, now, max_future_s)
        except RowError as err:
            rejects.add(EventLogError(label, offset + i + 1, err.reason, unit="row"), csv_line(cells))
            rows.keep[i] = False
            continue
        rows.set_row(i, row)
    return rows, rejects


def _checked_rows(time_ms: np.ndarray, actor: np.ndarray, target: np.ndarray, name_index: np.ndarray,
                  ids: pa.Array | pa.ChunkedArray | None, odd_cells: np.ndarray, now: float,
                  max_future_s: float) -> tuple["_Chunk", np.ndarray]:
    """Typed edge columns as a chunk of rows, and the indices of the rows
    the array rules flag (odd cells, unknown names, times beyond exact
    float range, out of the time window, invalid events): those go through
    the row reader's own checks."""
    n = time_ms.shape[0]
    kind, detail = _KIND_OF[name_index], _DETAIL_OF[name_index]
    if ids is not None:
        event_id = ids.to_numpy(zero_copy_only=False)
        id_length = pc.utf8_length(ids).to_numpy(zero_copy_only=False)
    else:
        event_id = np.full(n, "", object)
        id_length = np.zeros(n, np.int32)
    odd = odd_cells | (name_index < 0) | (np.abs(time_ms) > _EXACT_MS)
    when, late_or_early = event_times(time_ms / 1000.0, now, max_future_s)
    flagged = np.flatnonzero(odd | late_or_early | invalid_events(kind, actor, target, detail, id_length))
    return _Chunk(when, kind, actor, target, detail, event_id, np.ones(n, np.bool_)), flagged


def _parquet_cell(column: pa.Array, i: int) -> str:
    """A Parquet value as the edge CSV cell that means the same ("" for
    null; a timestamp as Unix milliseconds)."""
    value = column[i]
    if not value.is_valid:
        return ""
    if pa.types.is_timestamp(column.type):
        value = value.cast(pa.timestamp("ms")).cast(pa.int64())
    return str(value.as_py())
