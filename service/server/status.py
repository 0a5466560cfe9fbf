"""Domain errors -> gRPC status, in one place (AIP-193: a google.rpc.Status
with one ErrorInfo, plus a BadRequest naming the fields at fault and a
RetryInfo when a retry later may succeed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

# ErrorInfo.domain: the name of the service that raised the error (AIP-193:
# "the logical grouping to which the reason belongs", e.g.
# pubsub.googleapis.com). Together with the reason it identifies the error;
# it names the service, not an API version, so it stays across versions.
DOMAIN = "contactgraph.example.com"


def _pack(message: Message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, reason: str, *,
          violations: Sequence[tuple[str, str]] = (), retry_after_s: float | None = None,
          **metadata: str) -> NoReturn:
    """Abort with a google.rpc.Status holding one ErrorInfo (``reason``,
    ``DOMAIN``, ``metadata``); a BadRequest with one FieldViolation per
    ``(field, description)`` in ``violations``; a RetryInfo asking for
    ``retry_after_s`` seconds of wait when given."""
    details = [_pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))]
    if violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in violations])))
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable: abort_with_status raises")


def invalid_argument(context: grpc.ServicerContext, field: str, message: str,
                     reason: str = "INVALID_FIELD") -> NoReturn:
    abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}", reason,
          violations=[(field, message)], field=field)
