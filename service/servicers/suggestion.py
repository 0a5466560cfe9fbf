"""SuggestionService: pages of safe suggestions."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import cast

import grpc
import numpy as np

from contactgraph.v1 import filter_reason_pb2, suggestion_service_pb2, suggestion_service_pb2_grpc
from graph.model import Surface
from service.pipeline.explain import explain
from service.pipeline.reasons import FilterReason, SuggestionReason
from service.server.config import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ServerConfig
from service.server.state import ServingState
from service.server.status import invalid_argument
from service.servicers.page_token import MAX_WALK, PageTokenError, PageTokens

log = logging.getLogger(__name__)

# Enum conversions looked up once, not per suggestion.
_PROTO_REASON = {r: suggestion_service_pb2.SuggestionReason.Value(r.value) for r in SuggestionReason}
# protoc's stubs type an enum field as the enum class, but
# EnumTypeWrapper.Value returns int: at run time both are the same int.
_PROTO_FILTER_REASON = {r: cast(filter_reason_pb2.FilterReason, filter_reason_pb2.FilterReason.Value(r.value))
                        for r in FilterReason}


class SuggestionServicer(suggestion_service_pb2_grpc.SuggestionServiceServicer):
    def __init__(self, state: Callable[[], ServingState], config: ServerConfig) -> None:
        self._state = state
        keys = config.token_keys
        if not keys:
            log.warning("no page token key configured (--page-token-key-file or CONTACTGRAPH_PAGE_TOKEN_KEY): "
                        "using a random one; page tokens will not survive a restart or work on another server")
            keys = (secrets.token_bytes(32),)
        self._tokens = PageTokens(keys, config.token_ttl_s)

    def SuggestContacts(self, request: suggestion_service_pb2.SuggestContactsRequest,
                        context: grpc.ServicerContext) -> suggestion_service_pb2.SuggestContactsResponse:
        started = time.perf_counter()
        state = self._state()
        now = state.store.clock.now()
        if request.user_id <= 0:
            invalid_argument(context, "user_id", "must be a positive user id")
        if request.page_size < 0:
            invalid_argument(context, "page_size", f"must not be negative (0 means {DEFAULT_PAGE_SIZE}, "
                                                   f"at most {MAX_PAGE_SIZE} are served)")
        if request.surface not in Surface._value2member_map_:
            invalid_argument(context, "surface", f"unknown surface {request.surface}")
        surface = Surface(request.surface) if request.surface else Surface.NEW_CONTACTS
        # AIP-158: a page_size over the maximum is served as the maximum,
        # not refused; the caller pages on with next_page_token as usual.
        page_size = min(request.page_size, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
        shown: tuple[int, ...] = ()
        if request.page_token:
            try:
                shown = self._tokens.read(request.page_token, viewer=request.user_id, surface=int(surface),
                                          snapshot_id=state.snapshot_id, now=now).shown
            except PageTokenError as err:
                invalid_argument(context, "page_token", str(err), reason="INVALID_PAGE_TOKEN")
        # One more than the page, to know whether a next page exists; the
        # pipeline filters only as far down its ranking as that needs.
        room = min(page_size, max(MAX_WALK - len(shown), 0))
        ranked = state.pipeline.suggest(request.user_id, surface, now, limit=room + 1, exclude=shown)
        response = suggestion_service_pb2.SuggestContactsResponse(
            snapshot_id=state.snapshot_id, policy_version=state.safety.policy.current.version)
        if ranked.ineligible is not None:
            response.ineligible_reason = _PROTO_FILTER_REASON[ranked.ineligible]
        fresh = np.flatnonzero(~np.isin(ranked.user_ids, np.array(shown, np.int64))) if shown \
            else np.arange(ranked.user_ids.shape[0])
        page = fresh[:room]
        picked = page.tolist()
        page_ids = ranked.user_ids[page].tolist()
        add = response.suggestions.add
        for i, user_id, score, mutual in zip(picked, page_ids, ranked.scores[page].tolist(),
                                             ranked.mutual_counts[page].tolist(), strict=True):
            add(user_id=user_id, score=score, reasons=[_PROTO_REASON[r] for r in ranked.reasons[i]],
                mutual_friend_count=mutual)
        walked = list(shown) + page_ids
        # A user erased since the last page is never shown again; the token
        # reissued now must not carry their id on (it is encrypted, but it
        # is still their data).
        erased = state.store.erased_subset(walked)
        if erased:
            walked = [u for u in walked if u not in erased]
        state.pipeline.finish(request.user_id, surface, page_ids, [ranked.reasons[i] for i in picked], now)
        if fresh.shape[0] > page.shape[0] and len(walked) < MAX_WALK:
            response.next_page_token = self._tokens.issue(request.user_id, int(surface), state.snapshot_id,
                                                          walked, now)
        log.info("SuggestContacts", extra={"fields": {
            "user_id": request.user_id, "surface": surface.name, "returned": len(response.suggestions),
            "ms": round((time.perf_counter() - started) * 1000, 2), **ranked.counts}})
        return response

    def ExplainSuggestion(self, request: suggestion_service_pb2.ExplainSuggestionRequest,
                          context: grpc.ServicerContext) -> suggestion_service_pb2.ExplainSuggestionResponse:
        if request.viewer_id <= 0:
            invalid_argument(context, "viewer_id", "must be a positive user id")
        if request.candidate_id <= 0:
            invalid_argument(context, "candidate_id", "must be a positive user id")
        if request.surface not in Surface._value2member_map_:
            invalid_argument(context, "surface", f"unknown surface {request.surface}")
        state = self._state()
        now = state.store.clock.now()
        found = explain(state.pipeline, request.viewer_id, request.candidate_id, Surface(request.surface), now)
        response = suggestion_service_pb2.ExplainSuggestionResponse(
            rank=found.rank, score=found.score, snapshot_id=state.snapshot_id,
            policy_version=state.safety.policy.current.version,
            filter_reasons=[_PROTO_FILTER_REASON[r] for r in found.filter_reasons])
        for name, score in found.sources.items():
            response.sources.add(source=name, score=score)
        if found.ineligible is not None:
            response.ineligible_reason = _PROTO_FILTER_REASON[found.ineligible]
        log.info("ExplainSuggestion", extra={"fields": {
            "viewer_id": request.viewer_id, "candidate_id": request.candidate_id, "rank": found.rank}})
        return response
