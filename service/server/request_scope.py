"""What the serving layer knows about the request being handled, for code
that must not import gRPC (the pipeline, the safety engine, log lines).

The server's interceptor opens a scope around each call (``open_scope``);
inside it, ``checkpoint(stage)`` raises ``Abandoned`` once the client's
deadline has passed or the client has gone away, so the pipeline can stop
between stages instead of finishing work nobody will read, and
``record_counts`` hands the pipeline's per-stage counts to the metrics.
Outside a scope (offline evaluation, tests of the pipeline) both are no-ops.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Abandoned", "RequestIdLogFilter", "RequestScope", "checkpoint", "current", "open_scope",
           "record_counts"]


class Abandoned(Exception):
    """The caller no longer wants the answer: its deadline passed
    (``expired``) or it cancelled. ``stage`` names where work stopped."""

    def __init__(self, stage: str, expired: bool) -> None:
        super().__init__(f"abandoned at {stage}: {'deadline exceeded' if expired else 'cancelled by the client'}")
        self.stage = stage
        self.expired = expired


class RequestScope:
    """One call: its request id (from ``x-request-id`` metadata, or made up
    on first use), a liveness probe and the counts the pipeline recorded.

    ``remaining``: seconds left before the deadline (None: no deadline);
    ``active``: False once the call is over (cancelled or timed out)."""

    __slots__ = ("_active", "_remaining", "_request_id", "counts")

    def __init__(self, request_id: str | None, remaining: Callable[[], float | None] | None = None,
                 active: Callable[[], bool] | None = None) -> None:
        self._request_id = request_id
        self._remaining = remaining
        self._active = active
        self.counts: Mapping[str, int] | None = None

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = uuid.uuid4().hex[:16]
        return self._request_id

    @property
    def has_request_id(self) -> bool:
        return self._request_id is not None

    def check(self, stage: str) -> None:
        """Raise Abandoned if the deadline has passed or the call ended."""
        if self._remaining is not None:
            left = self._remaining()
            if left is not None and left <= 0:
                raise Abandoned(stage, expired=True)
        if self._active is not None and not self._active():
            left = self._remaining() if self._remaining is not None else None
            raise Abandoned(stage, expired=left is not None and left <= 0)


_scope: ContextVar[RequestScope | None] = ContextVar("contactgraph_request_scope", default=None)


@contextmanager
def open_scope(scope: RequestScope) -> Iterator[RequestScope]:
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current() -> RequestScope | None:
    return _scope.get()


def checkpoint(stage: str) -> None:
    """Between pipeline stages: stop (raise Abandoned) if the caller's
    deadline has passed or it cancelled. A no-op outside a served call."""
    scope = _scope.get()
    if scope is not None:
        scope.check(stage)


def record_counts(counts: Mapping[str, int]) -> None:
    """The pipeline's per-stage counts ("source.<name>", "filter.<reason>",
    "ranked") for the metrics. A no-op outside a served call."""
    scope = _scope.get()
    if scope is not None:
        scope.counts = counts


class RequestIdLogFilter(logging.Filter):
    """Adds ``request_id`` to the JSON fields of every log line written
    while a call is being handled (service/server/logs.py prints ``fields``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = _scope.get()
        if scope is not None:
            fields = getattr(record, "fields", None)
            record.fields = {**fields, "request_id": scope.request_id} if fields else \
                {"request_id": scope.request_id}
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Attach RequestIdLogFilter to the handlers of ``logger`` (the root
    logger by default): call after logging is configured."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RequestIdLogFilter) for f in handler.filters):
            handler.addFilter(RequestIdLogFilter())
