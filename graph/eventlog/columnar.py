"""What the column-wise edge readers (``csv_columns``, ``parquet``) share:
a chunk of rows with the ones kept, its bad lines in line order, event
names looked up column-wise and the array checks that pick the rows the
row reader (``csv_lines.edge_row``) must see. It imports pyarrow, which
``common`` must not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import EventLogError
from ..events import event_times, invalid_events
from ..table import EventColumns, EventTable
from .common import EDGE_EVENT_NAMES, BadLines

__all__ = ["Chunk", "Rejects", "checked_rows", "event_name_index"]

_NAMES = list(EDGE_EVENT_NAMES)
_NAME_SET = pa.array(_NAMES, pa.string())
# Index into _NAMES -> kind / detail; the last slot (-1) is "unknown name".
_KIND_OF = np.array([int(k) for k, _ in EDGE_EVENT_NAMES.values()] + [0], np.uint8)
_DETAIL_OF = np.array([d for _, d in EDGE_EVENT_NAMES.values()] + [0], np.int16)
# float64 holds every integer up to 2**53 exactly, so time_ms / 1000.0
# matches Python's int / float division only below that.
_EXACT_MS = 2**53


@dataclass
class Chunk(EventColumns):
    """One chunk's rows and which of them are not rejected."""

    keep: npt.NDArray[np.bool_]

    def kept(self) -> EventTable:
        """The rows not rejected."""
        return self.rows(self.keep)


@dataclass
class Rejects:
    """Bad lines of one chunk, reported in line order once the chunk is
    done (width errors and value errors are found in separate passes)."""

    items: list[tuple[int, EventLogError, str]] = field(default_factory=list)

    def add(self, error: EventLogError, text: str) -> None:
        self.items.append((error.line, error, text))

    def report(self, bad_lines: BadLines, header: str) -> None:
        for _, error, text in sorted(self.items, key=lambda item: item[0]):
            bad_lines.reject(error, text, header)


def event_name_index(column: pa.ChunkedArray) -> npt.NDArray[np.intp]:
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


def checked_rows(time_ms: np.ndarray, actor: np.ndarray, target: np.ndarray, name_index: np.ndarray,
                 ids: pa.Array | pa.ChunkedArray | None, odd_cells: np.ndarray, now: float,
                 max_future_s: float) -> tuple[Chunk, np.ndarray]:
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
    return Chunk(when, kind, actor, target, detail, event_id, np.ones(n, np.bool_)), flagged
