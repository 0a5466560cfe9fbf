"""Parquet event logs (edge or profile) read in record batches with
pyarrow.

Parquet has rows, not lines: its bad rows are reported as ``file:row N``
(rows count from 1) and rejected rows are rendered as CSV lines of the
same form (edge or profile), so that they can be fixed and fed back. Edge
rows are checked column-wise as in ``csv_columns``; the rows the array
checks flag, and every profile row, go through ``csv_lines``' row
functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import EventLogError
from ..model import EventKind, Profile
from ..table import EventTable
from .columnar import Chunk, Rejects, checked_rows, event_name_index
from .common import (
    EDGE_COLUMNS,
    EDGE_OPTIONAL_COLUMNS,
    PROFILE_COLUMNS,
    PROFILE_OPTIONAL_COLUMNS,
    BadLines,
    Progress,
    RowError,
    csv_line,
)
from .csv_lines import EdgeLayout, edge_row, profile_row

__all__ = ["read_parquet"]

PARQUET_BATCH_ROWS = 1 << 20
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
) -> tuple[Chunk, Rejects]:
    """Profile rows through the profile CSV's row function (profiles are
    one row per user: no need to go column-wise); kept profiles are added to
    ``profiles`` under their row in the table being built."""
    col = {name: i for i, name in enumerate(header)}
    n = batch.num_rows
    rejects = Rejects()
    keep = np.ones(n, np.bool_)
    users = np.zeros(n, np.int64)
    for i, values in enumerate(zip(*(batch.column(j).to_pylist() for j in range(len(header))), strict=True)):
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
    return Chunk(np.full(n, now, np.float64), np.full(n, int(EventKind.PROFILE), np.uint8), users,
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
) -> tuple[Chunk, Rejects]:
    time_ms, odd_time = _parquet_ints(batch.column(layout.time))
    actor, odd_actor = _parquet_ints(batch.column(layout.actor))
    target, odd_target = _parquet_ints(batch.column(layout.target))
    name_index = event_name_index(pa.chunked_array([batch.column(layout.event)]))
    ids = batch.column(layout.event_id).cast(pa.string()).fill_null("") if layout.event_id is not None else None
    rows, flagged = checked_rows(time_ms, actor, target, name_index, ids, odd_time | odd_actor | odd_target,
                                  now, max_future_s)
    rejects = Rejects()
    columns = [batch.column(j) for j in range(len(header))]
    for i in flagged.tolist():
        cells = [_parquet_cell(column, i) for column in columns]
        null = [c for c, column in zip(header, columns, strict=True) if c != "event_id" and not column[i].is_valid]
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


def _parquet_cell(column: pa.Array, i: int) -> str:
    """A Parquet value as the edge CSV cell that means the same ("" for
    null; a timestamp as Unix milliseconds)."""
    value = column[i]
    if not value.is_valid:
        return ""
    if pa.types.is_timestamp(column.type):
        value = value.cast(pa.timestamp("ms")).cast(pa.int64())
    return str(value.as_py())
