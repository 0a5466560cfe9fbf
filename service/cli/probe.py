"""The probe: a person at a terminal asking the service things."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tabulate import tabulate

from contactgraph.v1 import suggestion_service_pb2, suggestion_service_pb2_grpc
from service.server.server import SERVICE_NAMES
from service.server.tls import ClientTls


class ProbeError(Exception):
    """Something the person should read; exit code 1 (FAILURE)."""


class Unreachable(ProbeError):
    """No server answers at the target (gRPC UNAVAILABLE); exit code 4."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call: the address, TLS (None: plaintext) and a
    request id sent as ``x-request-id`` metadata on every call (it shows up
    in the server's log lines)."""

    address: str
    tls: ClientTls | None = None
    request_id: str | None = None

    def __str__(self) -> str:
        return self.address


Target = str | Endpoint


class _RequestId(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, request_id: str) -> None:
        self._metadata = ("x-request-id", request_id)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        details = details._replace(metadata=[*(details.metadata or ()), self._metadata])
        return continuation(details, request)


def _channel(target: Target) -> grpc.Channel:
    endpoint = target if isinstance(target, Endpoint) else Endpoint(target)
    if endpoint.tls is not None:
        channel = grpc.secure_channel(endpoint.address, endpoint.tls.credentials(), options=endpoint.tls.options())
    else:
        channel = grpc.insecure_channel(endpoint.address)
    if endpoint.request_id:
        return grpc.intercept_channel(channel, _RequestId(endpoint.request_id))
    return channel


def _rpc_error(err: grpc.RpcError, target: Target) -> ProbeError:
    code = err.code() if hasattr(err, "code") else None
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = "is the server running?"
        if isinstance(target, Endpoint) and target.tls is not None:
            hint = "is the server running, and do --tls-ca and the client certificate match its TLS setup?"
        return Unreachable(f"cannot reach {target}: {hint} ({err.details()})")
    return ProbeError(f"{code.name if code else 'ERROR'}: {err.details() if hasattr(err, 'details') else err}")




def suggest(target: Target, user_id: int, page_size: int, surface: str, page_token: str, as_json: bool,
            timeout: float) -> str:
    request = suggestion_service_pb2.SuggestContactsRequest(
        user_id=user_id, page_size=page_size, page_token=page_token,
        surface=f"SURFACE_{surface.upper()}")
    response = _call(target, suggestion_service_pb2_grpc.SuggestionServiceStub, "SuggestContacts", request, timeout)
    if as_json:
        return json_format.MessageToJson(response, preserving_proto_field_name=True)
    rows = [
        [s.user_id, s.score,
         ", ".join(suggestion_service_pb2.SuggestionReason.Name(r).removeprefix("SUGGESTION_REASON_").lower()
                   for r in s.reasons),
         s.mutual_friend_count]
        for s in response.suggestions
    ]
    out = [f"suggestions for user {user_id} (snapshot {response.snapshot_id}, policy {response.policy_version})"]
    if response.ineligible_reason:
        from contactgraph.v1 import filter_reason_pb2
        out.append("no suggestions: " + filter_reason_pb2.FilterReason.Name(response.ineligible_reason))
    # Ids left-aligned as names are; the quantities right-aligned.
    out.append(tabulate(rows, ["user", "score", "reasons", "mutual friends"], floatfmt=".3f",
                        colalign=("left", "right", "left", "right")))
    if response.next_page_token:
        out.append(f"next page: --page-token {response.next_page_token}")
    return "\n".join(out)


def health(target: Target, as_json: bool, timeout: float) -> tuple[str, bool]:
    """The serving status of the server and each service; ok is all SERVING."""
    statuses: dict[str, str] = {}
    with _channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", *SERVICE_NAMES):
            try:
                # types-grpcio-health-checking's HealthStub declares no methods.
                status = stub.Check(  # type: ignore[attr-defined]
                    health_pb2.HealthCheckRequest(service=name), timeout=timeout).status
                statuses[name or "(server)"] = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as err:
                raise _rpc_error(err, target) from None
    ok = all(s == "SERVING" for s in statuses.values())
    if as_json:
        return json.dumps({"target": str(target), "ok": ok, "services": statuses}, indent=2), ok
    return tabulate([[k, v] for k, v in statuses.items()], ["service", "status"]), ok


def emit(text: str) -> None:
    sys.stdout.write(text + "\n")


def _call(target: Target, stub_factory: Any, method: str, request: Any, timeout: float) -> Any:
    with _channel(target) as channel:
        try:
            return getattr(stub_factory(channel), method)(request, timeout=timeout)
        except grpc.RpcError as err:
            raise _rpc_error(err, target) from None


def _show(message: Any, as_json: bool) -> str:
    text = json_format.MessageToJson(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    if as_json:
        return text
    flat = json.loads(text)
    # Values as the JSON gave them: ids are strings there, not numbers to align.
    return tabulate([[k, json.dumps(v) if isinstance(v, (list, dict)) else v] for k, v in flat.items()],
                    ["field", "value"], disable_numparse=True)


def explain(target: Target, viewer: int, candidate: int, surface: str, as_json: bool, timeout: float) -> str:
    request = suggestion_service_pb2.ExplainSuggestionRequest(
        viewer_id=viewer, candidate_id=candidate, surface=f"SURFACE_{surface.upper()}")
    return _show(_call(target, suggestion_service_pb2_grpc.SuggestionServiceStub, "ExplainSuggestion", request,
                       timeout), as_json)


def check(target: Target, sender: int, recipient: int, as_json: bool, timeout: float) -> str:
    from contactgraph.v1 import safety_service_pb2, safety_service_pb2_grpc

    request = safety_service_pb2.CheckMessagingRequest(sender_id=sender, recipient_id=recipient)
    return _show(_call(target, safety_service_pb2_grpc.SafetyServiceStub, "CheckMessaging", request, timeout),
                 as_json)


def relationship(target: Target, a: int, b: int, as_json: bool, timeout: float) -> str:
    from contactgraph.v1 import graph_service_pb2, graph_service_pb2_grpc

    request = graph_service_pb2.GetRelationshipRequest(actor_id=a, target_id=b)
    return _show(_call(target, graph_service_pb2_grpc.GraphServiceStub, "GetRelationship", request, timeout),
                 as_json)


def guardian(target: Target, action: str, guardian_id: str, child: int, token: str, suggestions: str | None,
             messaging: str | None, remove: list[int], as_json: bool, timeout: float) -> str:
    from contactgraph.v1 import guardian_service_pb2 as pb
    from contactgraph.v1 import guardian_service_pb2_grpc

    stub = guardian_service_pb2_grpc.GuardianServiceStub
    request: Any
    if action == "link":
        request, method = pb.LinkGuardianRequest(guardian_id=guardian_id, child_user_id=child,
                                                 consent_token=token), "LinkGuardian"
    elif action == "unlink":
        request, method = pb.UnlinkGuardianRequest(guardian_id=guardian_id, child_user_id=child), "UnlinkGuardian"
    elif action == "controls":
        request = pb.SetGuardianControlsRequest(guardian_id=guardian_id, child_user_id=child,
                                                add_removed_contact_ids=remove)
        if suggestions is not None:
            request.suggestions_enabled = suggestions == "on"
        if messaging is not None:
            request.messaging = pb.GuardianMessaging.Value(f"GUARDIAN_MESSAGING_{messaging.upper()}")
        method = "SetGuardianControls"
    elif action == "overview":
        request, method = pb.GetGuardianOverviewRequest(guardian_id=guardian_id, child_user_id=child), \
            "GetGuardianOverview"
    else:
        request, method = pb.GetGuardianTransparencyRequest(child_user_id=child), "GetGuardianTransparency"
    return _show(_call(target, stub, method, request, timeout), as_json)
