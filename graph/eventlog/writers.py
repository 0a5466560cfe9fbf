"""Writers of the edge CSV, the edge Parquet and the profile CSV forms
(the readers' inputs; the demo network and tests use them)."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from ..model import AccountState, AgeAssurance, AgeBand, MessagePrivacy, Profile
from .common import EDGE_COLUMNS, PROFILE_COLUMNS, PROFILE_OPTIONAL_COLUMNS, PROTO_NAME, is_gzip

__all__ = ["write_edge_csv", "write_edge_parquet", "write_profile_csv"]


@contextmanager
def _open_write(path: Path) -> Iterator[IO[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_gzip(path):
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
        writer.writerows(zip(*columns, strict=True))
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
    return str(PROTO_NAME[type(value)](int(value)))


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
