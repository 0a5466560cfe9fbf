"""Event log files read into an ``EventTable``, and the writers for them."""

from .common import (
    EDGE_COLUMNS,
    EDGE_EVENT_NAMES,
    PROFILE_COLUMNS,
    BadLines,
    Progress,
    RejectedLine,
    read_event_file,
    read_event_files,
    write_edge_csv,
    write_edge_parquet,
    write_profile_csv,
)

__all__ = [
    "EDGE_EVENT_NAMES",
    "EDGE_COLUMNS",
    "PROFILE_COLUMNS",
    "BadLines",
    "Progress",
    "RejectedLine",
    "read_event_file",
    "read_event_files",
    "write_edge_csv",
    "write_edge_parquet",
    "write_profile_csv",
]
