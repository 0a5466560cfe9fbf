"""GuardianService: links, controls, overview and the child's view."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NoReturn, cast

import grpc
import numpy as np
from google.protobuf import timestamp_pb2

from contactgraph.v1 import guardian_service_pb2 as pb
from contactgraph.v1 import guardian_service_pb2_grpc, suggestion_service_pb2
from graph.model import AgeBand
from service.safety.engine import effective_bands
from service.safety.guardian import Controls, GuardianError, Messaging
from service.server.state import ServingState
from service.server.status import abort, invalid_argument
from service.server.tls import CHILD_REQUEST_ROLES, GUARDIAN_REQUEST_ROLES, Authorizer, peer_identities

log = logging.getLogger(__name__)

_CODES = {
    "permission": (grpc.StatusCode.PERMISSION_DENIED, "GUARDIAN_PERMISSION_DENIED"),
    "precondition": (grpc.StatusCode.FAILED_PRECONDITION, "GUARDIAN_PRECONDITION"),
    "not_found": (grpc.StatusCode.NOT_FOUND, "GUARDIAN_LINK_NOT_FOUND"),
    "exists": (grpc.StatusCode.ALREADY_EXISTS, "GUARDIAN_LINK_EXISTS"),
    "invalid": (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
}


def _fail(context: grpc.ServicerContext, err: GuardianError) -> NoReturn:
    code, reason = _CODES[err.kind]
    if err.field:
        # A field at fault in a request the caller must fix: a BadRequest too.
        violations = [(err.field, str(err))] if code == grpc.StatusCode.INVALID_ARGUMENT else []
        abort(context, code, str(err), err.reason or reason, violations=violations, field=err.field)
    abort(context, code, str(err), err.reason or reason)


def _stamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


# Messaging mirrors contactgraph.v1.GuardianMessaging number for number;
# protoc's stubs type the field as the enum class, an int at run time.
_PROTO_MESSAGING = {m: cast(pb.GuardianMessaging, int(m)) for m in Messaging}


def _controls(c: Controls) -> pb.GuardianControls:
    return pb.GuardianControls(suggestions_enabled=c.suggestions_enabled, messaging=_PROTO_MESSAGING[c.messaging],
                               removed_contact_ids=sorted(c.removed))


def _day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


class GuardianServicer(guardian_service_pb2_grpc.GuardianServiceServicer):
    def __init__(self, state: Callable[[], ServingState], authorizer: Authorizer | None = None) -> None:
        """``authorizer``: the mutual-TLS role check (None without mutual
        TLS: no client identity, no check)."""
        self._state = state
        self._authorizer = authorizer

    def _child(self, child: int, context: grpc.ServicerContext) -> tuple[bool, bool]:
        """(known, minor) for a child id."""
        if child <= 0:
            invalid_argument(context, "child_user_id", "must be a positive user id")
        store = self._state().store
        row = store.row(child)
        if row < 0 or not store.profiles.column("has_profile")[row]:
            return False, False
        return True, int(effective_bands(store, np.array([row]))[0]) != AgeBand.ADULT

    def LinkGuardian(self, request: pb.LinkGuardianRequest, context: grpc.ServicerContext) -> pb.GuardianLink:
        known, minor = self._child(request.child_user_id, context)
        guardians = self._state().safety.guardians
        try:
            when = guardians.link(request.guardian_id, request.child_user_id, request.consent_token,
                                  child_known=known, child_is_minor=minor)
        except GuardianError as err:
            _fail(context, err)
        return pb.GuardianLink(guardian_id=request.guardian_id, child_user_id=request.child_user_id,
                               link_time=_stamp(when))

    def UnlinkGuardian(self, request: pb.UnlinkGuardianRequest,
                       context: grpc.ServicerContext) -> pb.UnlinkGuardianResponse:
        if self._authorizer is not None:
            by_child = request.requested_by_child
            identities = peer_identities(context)
            if not self._authorizer.holds(identities, CHILD_REQUEST_ROLES if by_child else GUARDIAN_REQUEST_ROLES):
                who = "the child (the child's app, through the messaging backend)" if by_child else \
                    "the guardian (through the guardian portal)"
                _fail(context, self._state().safety.guardians.record_denial(
                    request.guardian_id, request.child_user_id,
                    f"requested_by_child: client {', '.join(identities) or '(no identity)'} may not unlink "
                    f"on behalf of {who}", reason="REQUESTER_NOT_ALLOWED", field="requested_by_child"))
        try:
            self._state().safety.guardians.unlink(request.guardian_id, request.child_user_id,
                                                  by_child=request.requested_by_child)
        except GuardianError as err:
            _fail(context, err)
        return pb.UnlinkGuardianResponse()

    def SetGuardianControls(self, request: pb.SetGuardianControlsRequest,
                            context: grpc.ServicerContext) -> pb.GuardianControls:
        _, minor = self._child(request.child_user_id, context)
        for i, user in enumerate(request.add_removed_contact_ids):
            if user <= 0:
                invalid_argument(context, f"add_removed_contact_ids[{i}]", "must be a positive user id")
        if request.messaging not in Messaging._value2member_map_:
            invalid_argument(context, "messaging", f"unknown value {request.messaging}")
        try:
            controls = self._state().safety.guardians.set_controls(
                request.guardian_id, request.child_user_id, child_is_minor=minor,
                suggestions_enabled=request.suggestions_enabled if request.HasField("suggestions_enabled") else None,
                messaging=Messaging(request.messaging), add_removed=list(request.add_removed_contact_ids))
        except GuardianError as err:
            _fail(context, err)
        return _controls(controls)

    def GetGuardianOverview(self, request: pb.GetGuardianOverviewRequest,
                            context: grpc.ServicerContext) -> pb.GuardianOverview:
        _, minor = self._child(request.child_user_id, context)
        state = self._state()
        safety = state.safety
        try:
            controls = safety.guardians.record_overview_read(request.guardian_id, request.child_user_id,
                                                             child_is_minor=minor)
        except GuardianError as err:
            _fail(context, err)
        now = state.store.clock.now()
        overview = pb.GuardianOverview(controls=_controls(controls))
        for contact, days in sorted(safety.guardians.message_days(request.child_user_id, now,
                                                                            guardian=request.guardian_id).items()):
            entry = overview.contacts.add(user_id=contact)
            for day, n in sorted(days.items()):
                entry.daily_messages.add(day=_day(day), count=n)
        for reason, n in sorted(safety.ledger.shown_by_reason(request.child_user_id, now).items()):
            overview.suggestions_shown.add(reason=suggestion_service_pb2.SuggestionReason.Value(reason), count=n)
        return overview

    def GetGuardianTransparency(self, request: pb.GetGuardianTransparencyRequest,
                                context: grpc.ServicerContext) -> pb.GuardianTransparency:
        known, _ = self._child(request.child_user_id, context)
        if not known:
            abort(context, grpc.StatusCode.NOT_FOUND, f"user {request.child_user_id} is unknown", "USER_NOT_FOUND")
        guardians = self._state().safety.guardians
        out = pb.GuardianTransparency(controls=_controls(guardians.effective(request.child_user_id) or Controls()))
        for guardian, when in sorted(guardians.links_of(request.child_user_id).items()):
            out.links.add(guardian_id=guardian, child_user_id=request.child_user_id, link_time=_stamp(when))
        for record in guardians.audit_of(request.child_user_id):
            out.records.add(time=_stamp(record.time), action=int(record.action), guardian_id=record.guardian_id,
                            child_user_id=record.child, detail=record.detail)
        return out
