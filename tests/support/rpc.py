"""What the integration tests send a test server: suggestion calls, event
batches and the events in them, each stamped with the servers' starting
clock (tests/conftest.py's SERVE_TIME)."""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import (
    graph_service_pb2,
    graph_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
    surface_pb2,
)
from contactgraph.v1 import user_profile_pb2 as profile_pb
from tests.conftest import SERVE_TIME


def suggest(channel: grpc.Channel, user_id: int, *, page_size: int = 100, page_token: str = "",
            surface: surface_pb2.Surface = surface_pb2.SURFACE_NEW_CONTACTS,
            ) -> suggestion_service_pb2.SuggestContactsResponse:
    # The generated *_pb2_grpc modules come without type stubs.
    stub = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)  # type: ignore[no-untyped-call]
    request = suggestion_service_pb2.SuggestContactsRequest(
        user_id=user_id, page_size=page_size, page_token=page_token, surface=surface)
    response: suggestion_service_pb2.SuggestContactsResponse = stub.SuggestContacts(request, timeout=10)
    return response


def ids(response: suggestion_service_pb2.SuggestContactsResponse) -> list[int]:
    return [s.user_id for s in response.suggestions]


def apply(channel: grpc.Channel, *events: ev_pb.GraphEvent) -> graph_service_pb2.ApplyEventsResponse:
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)  # type: ignore[no-untyped-call]
    response: graph_service_pb2.ApplyEventsResponse = stub.ApplyEvents(
        graph_service_pb2.ApplyEventsRequest(events=list(events)), timeout=10)
    return response


def serve_time_stamp() -> timestamp_pb2.Timestamp:
    """event_time of the helpers' events: the test servers' clock at start
    (what a missing time used to mean; event_time is required now)."""
    return timestamp_pb2.Timestamp(seconds=int(SERVE_TIME))


def edge(kind: str, actor: int, target: int, event_id: str) -> ev_pb.GraphEvent:
    """An edge event; ``kind`` names GraphEvent's Edge field (follow,
    unfollow, block, mute, ...)."""
    return ev_pb.GraphEvent(event_id=event_id, event_time=serve_time_stamp(),
                            **{kind: ev_pb.Edge(actor_id=actor, target_id=target)})  # type: ignore[arg-type]


def message(actor: int, target: int, event_id: str) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=event_id, event_time=serve_time_stamp(), interaction=ev_pb.Interaction(
        actor_id=actor, target_id=target, type=ev_pb.INTERACTION_TYPE_MESSAGE))


def profile(event_id: str, **fields: object) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=event_id, event_time=serve_time_stamp(),
                            profile=profile_pb.UserProfile(**fields))  # type: ignore[arg-type]


def erase(user_id: int, event_id: str) -> ev_pb.GraphEvent:
    return ev_pb.GraphEvent(event_id=event_id, event_time=serve_time_stamp(),
                            erase_user=ev_pb.EraseUser(user_id=user_id))
