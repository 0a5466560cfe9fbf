"""Reading the errors a test server answers with: every refusal carries a
``google.rpc.Status`` with exactly one ``ErrorInfo`` whose domain is the
service's name (service/server/status.py, AIP-193); a field error adds a
``BadRequest``, an overload answer a ``RetryInfo``. These helpers unpack
them."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service.server.status import DOMAIN


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo of a failed call, in the service's domain; fails
    the test if the error carries no google.rpc.Status, no ErrorInfo or
    more than one, or a detail of a kind the server never sends."""
    # A stub's RpcError is also its grpc.Call; the type stubs cannot say so.
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    allowed = (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo)
    assert all(any(d.Is(kind.DESCRIPTOR) for kind in allowed) for d in status.details), status
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1, status
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.domain == DOMAIN, info  # the service's name (AIP-193), not its API version
    return info


def field_violations(err: grpc.RpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The FieldViolations of the error's one google.rpc.BadRequest."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    found = [d for d in status.details if d.Unpack(bad)]
    assert len(found) == 1, status
    return list(bad.field_violations)


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
    return str(err.details()), error_info(err)


def expect_invalid(call: Callable[[], object], field: str) -> tuple[str, error_details_pb2.ErrorInfo]:
    """Run ``call``; it must fail with INVALID_ARGUMENT naming ``field`` in
    the message and in the ErrorInfo's ``field`` metadata."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    text, info = invalid_argument(caught.value)
    assert field in text, text
    assert info.metadata["field"] == field, info
    violations = field_violations(caught.value)
    assert [v.field for v in violations] == [field], violations
    assert all(v.description for v in violations), violations
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
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None and len(status.details) == 1, status
    assert (info.reason, info.domain, info.metadata["field"]) == ("EVENT_ID_REUSED", DOMAIN, field)
