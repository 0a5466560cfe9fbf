"""SafetyService: send-time checks from the same rules as suggestions."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import grpc

from contactgraph.v1 import filter_reason_pb2, safety_service_pb2, safety_service_pb2_grpc
from service.safety.engine import Decision, MessagingDecision
from service.safety.reasons import FilterReason
from service.server.state import ServingState
from service.server.status import invalid_argument

MAX_RECIPIENTS = 100


# Enum conversions looked up once, not per decision. protoc's stubs type an
# enum field as the enum class, but EnumTypeWrapper.Value returns int: at
# run time both are the same int, hence the casts.
_PROTO_REASON = {r: cast(filter_reason_pb2.FilterReason, filter_reason_pb2.FilterReason.Value(r.value))
                 for r in FilterReason}
# Decision mirrors contactgraph.v1.Decision number for number.
_PROTO_DECISION = {d: cast(safety_service_pb2.Decision, int(d)) for d in Decision}


def _reasons(decision: MessagingDecision) -> list[filter_reason_pb2.FilterReason]:
    return [_PROTO_REASON[r] for r in decision.reasons]


class SafetyServicer(safety_service_pb2_grpc.SafetyServiceServicer):
    def __init__(self, state: Callable[[], ServingState]) -> None:
        self._state = state

    def CheckMessaging(self, request: safety_service_pb2.CheckMessagingRequest,
                       context: grpc.ServicerContext) -> safety_service_pb2.CheckMessagingResponse:
        if request.sender_id <= 0:
            invalid_argument(context, "sender_id", "must be a positive user id")
        if request.recipient_id <= 0:
            invalid_argument(context, "recipient_id", "must be a positive user id")
        state = self._state()
        decision = state.safety.check_messaging(state.store, request.sender_id, [request.recipient_id],
                                                state.store.clock.now())[0]
        return safety_service_pb2.CheckMessagingResponse(
            allowed=decision.allowed, decision=_PROTO_DECISION[decision.decision], reasons=_reasons(decision),
            policy_version=state.safety.policy.current.version)

    def BatchCheckMessaging(self, request: safety_service_pb2.BatchCheckMessagingRequest,
                            context: grpc.ServicerContext) -> safety_service_pb2.BatchCheckMessagingResponse:
        if request.sender_id <= 0:
            invalid_argument(context, "sender_id", "must be a positive user id")
        if len(request.recipient_ids) > MAX_RECIPIENTS:
            invalid_argument(context, "recipient_ids", f"at most {MAX_RECIPIENTS} recipients, "
                                                       f"got {len(request.recipient_ids)}")
        for i, recipient in enumerate(request.recipient_ids):
            if recipient <= 0:
                invalid_argument(context, f"recipient_ids[{i}]", "must be a positive user id")
        state = self._state()
        decisions = state.safety.check_messaging(state.store, request.sender_id, list(request.recipient_ids),
                                                 state.store.clock.now())
        response = safety_service_pb2.BatchCheckMessagingResponse(
            policy_version=state.safety.policy.current.version)
        add = response.results.add
        # One decision per recipient, in order: a short list must not
        # silently drop recipients from the answer.
        for recipient, decision in zip(request.recipient_ids, decisions, strict=True):
            add(recipient_id=recipient, allowed=decision.allowed, decision=_PROTO_DECISION[decision.decision],
                reasons=_reasons(decision))
        return response
