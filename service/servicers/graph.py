"""GraphService: live events in."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from contactgraph.v1 import graph_service_pb2, graph_service_pb2_grpc
from graph.errors import InvalidEvent
from graph.events import event_from_proto

from ..config import MAX_BATCH_EVENTS, ServerConfig
from ..state import ServingState
from ..status import invalid_argument
from .relationships import RelationshipReads

log = logging.getLogger(__name__)


class GraphServicer(RelationshipReads, graph_service_pb2_grpc.GraphServiceServicer):
    def __init__(self, state: Callable[[], ServingState], config: ServerConfig) -> None:
        self._state = state
        self._config = config

    def ApplyEvents(self, request: graph_service_pb2.ApplyEventsRequest,
                    context: grpc.ServicerContext) -> graph_service_pb2.ApplyEventsResponse:
        if len(request.events) > MAX_BATCH_EVENTS:
            invalid_argument(context, "events", f"at most {MAX_BATCH_EVENTS} events per batch, "
                                                f"got {len(request.events)}")
        store = self._state().store
        now = store.clock.now()
        events = []
        for i, msg in enumerate(request.events):
            if not msg.event_id:
                invalid_argument(context, f"events[{i}].event_id", "must be set (it makes retries safe)")
            try:
                events.append(event_from_proto(msg, now, self._config.graph.max_future_s))
            except InvalidEvent as err:
                invalid_argument(context, f"events[{i}].{err.field}", str(err))
        result = store.apply_batch(events)
        self._state().safety.observe(store, events)
        return graph_service_pb2.ApplyEventsResponse(
            watermark=result.watermark, applied=result.applied, duplicates=result.duplicates)
