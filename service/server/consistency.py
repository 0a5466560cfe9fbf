"""Consistency tokens on reads: gRPC metadata ``x-min-watermark``.

A write through any replica answers with a ``watermark`` (the stream
sequence of its batch, ``serve --log nats://...``). A call that sends it
back as ``x-min-watermark`` is answered only once this replica has applied
the stream that far: the call waits, bounded by its deadline (or
``MAX_WAIT_S`` without one), and otherwise fails with DEADLINE_EXCEEDED.
It is never answered from state older than the token.

With the local WAL (one process) the header is not read: every
acknowledged write is applied before its answer."""

from __future__ import annotations

import grpc

from service.durability.stream_log import AppliedSequence
from service.server.status import abort, invalid_argument

MIN_WATERMARK_KEY = "x-min-watermark"
# Without a deadline a call waits at most this long for the stream.
MAX_WAIT_S = 10.0


def min_watermark(context: grpc.ServicerContext) -> int | None:
    """The call's ``x-min-watermark``, None without one; INVALID_ARGUMENT
    if it is not a non-negative integer."""
    for key, value in context.invocation_metadata():
        if key == MIN_WATERMARK_KEY:
            text = value if isinstance(value, str) else value.decode("ascii", "replace")
            try:
                target = int(text.strip())
            except ValueError:
                target = -1
            if target < 0:
                invalid_argument(context, MIN_WATERMARK_KEY,
                                 f"metadata {MIN_WATERMARK_KEY} must be a watermark a write returned "
                                 f"(a non-negative integer), got {text[:32]!r}")
            return target
    return None


def await_watermark(applied: AppliedSequence, context: grpc.ServicerContext) -> None:
    """Return once ``applied`` reaches the call's ``x-min-watermark`` (at
    once without one); DEADLINE_EXCEEDED if the deadline comes first."""
    target = min_watermark(context)
    if target is None or applied.value >= target:
        return
    remaining = context.time_remaining()
    timeout = MAX_WAIT_S if remaining is None else max(0.0, min(remaining, MAX_WAIT_S))
    if not applied.wait(target, timeout):
        abort(context, grpc.StatusCode.DEADLINE_EXCEEDED,
              f"this replica has applied the log up to {applied.value}, not yet to {MIN_WATERMARK_KEY} {target}; "
              "retry, or call another replica", "WATERMARK_NOT_REACHED",
              applied=str(applied.value), wanted=str(target))
