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
   discoverable boolean); see ``parquet``.

Every bad line raises ``EventLogError(path, line, reason)``: lines count from
1, the header being line 1, and the reason names the column or field
(Parquet: ``file:row N: reason``, rows counting from 1). Given a
``BadLines`` budget, readers skip up to its limit of bad lines instead,
handing each to it. Edge CSVs (``csv_columns``) and JSON lines
(``json_lines``) are parsed column-wise with pyarrow: lines the array
checks doubt go through the line-by-line readers (``csv_lines``,
``json_lines.read_json_line_by_line``), and files pyarrow could not number
exactly (CSV) or that are not UTF-8 or corrupt gzip (JSON lines) are read by
them whole. Those readers are the definition the column-wise ones follow.

The modules; each imports only modules listed above it, and none imports
another's private names:

- ``common``: what several readers share (bad-line budget, progress,
  cursor, opening files, column and event names, enum spellings).
- ``csv_lines``: the CSV line reader, edge and profile; its row functions
  define a row for every reader.
- ``csv_columns``: edge CSVs column-wise with pyarrow.
- ``parquet``: edge and profile Parquet files.
- ``json_lines``: JSON lines column-wise, and the line-by-line fallback.
- ``writers``: the edge CSV / Parquet and profile CSV writers.
- ``dispatch``: ``read_event_file(s)``, each file to its reader; pyarrow is
  imported only when a file needs it.
"""

# Only what callers outside the package use; the rest is imported from its module.
from .common import BadLines, RejectedLine
from .dispatch import read_event_file, read_event_files
from .writers import write_edge_csv, write_edge_parquet, write_profile_csv

__all__ = [
    "BadLines",
    "RejectedLine",
    "read_event_file",
    "read_event_files",
    "write_edge_csv",
    "write_edge_parquet",
    "write_profile_csv",
]
