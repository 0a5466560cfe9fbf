"""GraphService: live events in, through the journal (write-ahead log)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from contactgraph.v1 import graph_service_pb2, graph_service_pb2_grpc
from graph.errors import EventIdConflict, InvalidEvent, WalError
from graph.events import event_from_proto
from service.durability.journal import Journal, JournalFailed
from service.durability.stream_log import StreamUnavailable
from service.server.config import MAX_BATCH_EVENTS, ServerConfig
from service.server.state import ServingState
from service.server.status import abort, invalid_argument
from service.servicers.relationships import RelationshipReads

log = logging.getLogger(__name__)


class GraphServicer(RelationshipReads, graph_service_pb2_grpc.GraphServiceServicer):
    def __init__(self, state: Callable[[], ServingState], config: ServerConfig,
                 journal: Journal | None = None) -> None:
        self._state = state
        self._config = config
        # Without a journal of its own (tests), commit straight to the store.
        self._journal = journal if journal is not None else Journal(state().store)

    def ApplyEvents(self, request: graph_service_pb2.ApplyEventsRequest,
                    context: grpc.ServicerContext) -> graph_service_pb2.ApplyEventsResponse:
        if len(request.events) > MAX_BATCH_EVENTS:
            invalid_argument(context, "events", f"at most {MAX_BATCH_EVENTS} events per batch, "
                                                f"got {len(request.events)}")
        state = self._state()
        now = state.store.clock.now()
        events = []
        for i, msg in enumerate(request.events):
            if not msg.event_id:
                invalid_argument(context, f"events[{i}].event_id", "must be set (it makes retries safe)")
            try:
                events.append(event_from_proto(msg, now, self._config.graph.max_future_s))
            except InvalidEvent as err:
                invalid_argument(context, f"events[{i}].{err.field}", str(err))
        try:
            result = self._journal.commit(events, messages=request.events, now=now)
        except EventIdConflict as err:
            # A retry resends the same event; the same id with other content
            # would otherwise be dropped as a duplicate without a word.
            abort(context, grpc.StatusCode.ALREADY_EXISTS, f"events[{err.index}].event_id: {err}",
                  "EVENT_ID_REUSED", field=f"events[{err.index}].event_id")
        except StreamUnavailable as err:
            log.error("ApplyEvents not acknowledged: %s", err)
            abort(context, grpc.StatusCode.UNAVAILABLE,
                  f"the event stream did not acknowledge the batch, so it is not acknowledged: {err}; retry it "
                  "(the same event ids: a batch the stream did store is then a duplicate)", "STREAM_UNAVAILABLE",
                  retry_after_s=1.0)
        except (WalError, JournalFailed) as err:
            log.error("ApplyEvents not acknowledged: %s", err)
            if self._journal.broken is not None:
                # Sticky until a restart: retrying here cannot succeed.
                abort(context, grpc.StatusCode.UNAVAILABLE,
                      "the write-ahead log failed, so this server cannot make writes durable until it is "
                      "restarted; the batch is not acknowledged: retry it on another replica or after the "
                      "restart (health reports NOT_SERVING)", "WAL_UNAVAILABLE")
            abort(context, grpc.StatusCode.UNAVAILABLE,
                  "the write-ahead log is unavailable; the batch is not acknowledged (retry it later)",
                  "WAL_UNAVAILABLE")
        # Only the events applied now: a retried batch must not count twice.
        state.safety.observe(self._journal.store, result.events)
        state.update_search(result.events)
        return graph_service_pb2.ApplyEventsResponse(
            watermark=result.watermark, applied=result.applied, duplicates=result.duplicates)
