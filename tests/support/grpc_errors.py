"""Reading the errors a test server answers with: every refusal carries a
``google.rpc.Status`` with exactly one ``ErrorInfo`` (service/server/status.py,
AIP-193), which these helpers unpack."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo of a failed call; fails the test if the error
    carries no google.rpc.Status, or anything but one ErrorInfo."""
    # A stub's RpcError is also its grpc.Call; the type stubs cannot say so.
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    assert len(status.details) == 1, status
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info), status
    return info


def error_reason(err: grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call (UPPER_SNAKE)."""
    return str(error_info(err).reason)


def status_code(call: Callable[[], object]) -> grpc.StatusCode:
    """Run ``call``: its error's code, or OK if it succeeded."""
    try:
        call()
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()
        return code
    return grpc.StatusCode.OK
