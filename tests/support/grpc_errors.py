"""Reading the errors a test server answers with: every refusal carries a
``google.rpc.Status`` with exactly one ``ErrorInfo`` (service/server/status.py,
AIP-193), which these helpers unpack."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
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


def invalid_argument(err: grpc.RpcError) -> tuple[str, error_details_pb2.ErrorInfo]:
    """The message and the one ErrorInfo of an INVALID_ARGUMENT error."""
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    info = error_info(err)
    assert info.domain == "contactgraph.v1"
    return str(err.details()), info


def expect_invalid(call: Callable[[], object], field: str) -> tuple[str, error_details_pb2.ErrorInfo]:
    """Run ``call``; it must fail with INVALID_ARGUMENT naming ``field`` in
    the message and in the ErrorInfo's ``field`` metadata."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    text, info = invalid_argument(caught.value)
    assert field in text, text
    assert info.metadata["field"] == field, info
    return text, info


def expect_already_exists(call: Callable[[], object], field: str) -> None:
    """Run ``call``; it must fail with ALREADY_EXISTS naming ``field`` in the
    message and in its one ErrorInfo (reason EVENT_ID_REUSED)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    err = caught.value
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS, err
    assert field in str(err.details()), err.details()
    info = error_info(err)
    assert (info.reason, info.domain, info.metadata["field"]) == ("EVENT_ID_REUSED", "contactgraph.v1", field)
