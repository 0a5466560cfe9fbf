"""Exceptions raised by the graph package."""


class GraphError(Exception):
    """Base class of every error the graph package raises on purpose."""


class InvalidEvent(GraphError):
    """An event that may not be applied. ``field`` names the offending field
    (protobuf JSON path such as ``follow.target_id``), ``index`` its position
    in a batch when known."""

    def __init__(self, message: str, *, field: str = "", index: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.index = index

    def at(self, index: int) -> "InvalidEvent":
        return InvalidEvent(str(self), field=self.field, index=index)


class EventLogError(GraphError):
    """A bad line in an event log file: ``file:line: reason``.

    A Parquet file has rows, not lines: there ``unit`` is "row" and the
    message reads ``file:row N: reason`` (rows count from 1); ``line`` 0
    with a unit means the file as a whole (``file: reason``)."""

    def __init__(self, path: str, line: int, reason: str, *, unit: str = "line") -> None:
        if unit == "line":
            where = f"{path}:{line}"
        elif line:
            where = f"{path}:{unit} {line}"
        else:
            where = path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason
        self.unit = unit


class TooManyBadLines(EventLogError):
    """More bad lines than reading was allowed to skip; carries the first
    line over the limit."""

    def __init__(self, error: EventLogError, limit: int) -> None:
        super().__init__(error.path, error.line, error.reason, unit=error.unit)
        self.limit = limit
        self.args = (f"{self.args[0]} (bad line {limit + 1}; at most {limit} may be skipped)",)


class SnapshotError(GraphError):
    """A snapshot directory that is missing, corrupt or of another format."""


class WalError(GraphError):
    """The write-ahead log cannot be read or written."""


class WalCorruptError(WalError):
    """Damage that cannot be a torn tail: a bad segment header, or a bad
    frame in a sealed (not the newest) segment."""


class WalGapError(WalError):
    """Records between a snapshot's watermark and the log are missing."""


class EventIdConflict(GraphError):
    """An event reuses the id of an applied event (or of an earlier one in
    its batch) with other content: a client bug, not a retry. ``index`` is
    its position in the batch."""

    def __init__(self, event_id: str, index: int) -> None:
        super().__init__(f"event_id {event_id!r} was already used for an event with other content "
                         "(a retry must resend the same event; a new event needs a new id)")
        self.event_id = event_id
        self.index = index
