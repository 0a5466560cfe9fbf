"""Requests whose bytes do not decode are the client's error
(INVALID_ARGUMENT, reason UNDECODABLE_REQUEST), not the server's: the
interceptor gives every handler a tolerant deserializer and refuses what
it could not decode before the servicer runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service.server.status import invalid_argument

log = logging.getLogger(__name__)


class _Undecodable:
    """What a request's bytes decode to when they are not a valid message:
    gRPC answers a deserializer that raises with INTERNAL ("Exception
    deserializing request!") before any of our code runs, so the
    deserializer returns this instead and the call is refused as the
    client's error (INVALID_ARGUMENT)."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer``, answering ``_UNDECODABLE`` for bytes it refuses."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _UNDECODABLE
    return deserialize


def refuse_undecodable(label: str, request: Any, context: grpc.ServicerContext) -> None:
    if request is _UNDECODABLE:
        log.info("undecodable request", extra={"fields": {"method": label, "peer": context.peer()}})
        invalid_argument(context, "request", f"the request bytes are not a valid {label} request message "
                                             "(protobuf decoding failed)", reason="UNDECODABLE_REQUEST")


def decoded_each(label: str, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    """A request stream that stops the call with INVALID_ARGUMENT at the
    first message that does not decode."""
    for request in requests:
        refuse_undecodable(label, request, context)
        yield request


