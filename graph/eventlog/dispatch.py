"""``read_event_file`` / ``read_event_files``: each file to the reader of
its format, and the line-by-line reader (``read_text_file``) for whatever
the column-wise readers leave to it."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from ..errors import EventLogError, TooManyBadLines
from ..events import DEFAULT_MAX_FUTURE_S
from ..table import EventTable
from .common import JSON_SUFFIXES, PARQUET_SUFFIXES, BadLines, Cursor, Progress, format_suffix, is_gzip, open_text
from .csv_lines import read_csv_lines

__all__ = ["read_event_file", "read_event_files", "read_text_file"]


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
    suffix = format_suffix(path)
    if suffix in PARQUET_SUFFIXES and not is_gzip(path):
        from .parquet import read_parquet

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
    return read_text_file(path, label, now, max_future_s, bad_lines, progress)


def read_text_file(
    path: Path, label: str, now: float, max_future_s: float, bad_lines: BadLines, progress: Progress | None
) -> EventTable:
    """The line-by-line reader: JSON lines, profile CSVs, and edge CSVs the
    column-wise reader leaves to it."""
    cursor = Cursor()
    size = path.stat().st_size
    with open_text(path) as (handle, raw):
        if progress is not None:
            cursor.tell = lambda: progress(raw.tell(), size, "B")
        try:
            if format_suffix(path) in JSON_SUFFIXES:
                # It lives beside the column-wise JSON reader, which imports
                # pyarrow: here, not at the top, like the readers above.
                from .json_lines import read_json_line_by_line

                return read_json_line_by_line(handle, label, now, max_future_s, cursor, bad_lines)
            return read_csv_lines(handle, label, now, max_future_s, cursor, bad_lines)
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
