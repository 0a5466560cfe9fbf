"""Domain errors -> gRPC status, in one place (AIP-193: a google.rpc.Status
with one ErrorInfo)."""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "contactgraph.v1"


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, reason: str,
          **metadata: str) -> NoReturn:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[detail])
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable: abort_with_status raises")


def invalid_argument(context: grpc.ServicerContext, field: str, message: str,
                     reason: str = "INVALID_FIELD") -> NoReturn:
    abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}", reason, field=field)
