"""GraphService's read methods: the state held about a pair or a user."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
from google.protobuf import timestamp_pb2

from contactgraph.v1 import graph_service_pb2
from graph.model import decode_region
from service.server.config import ServerConfig
from service.server.state import ServingState
from service.server.status import abort, invalid_argument
from service.server.tls import TRUSTED_ROLES, caller_roles


def _stamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(seconds))


class RelationshipReads:
    """Mixed into the GraphService servicer; expects ``self._state``."""

    _state: Callable[[], ServingState]
    _config: ServerConfig

    def GetRelationship(self, request: graph_service_pb2.GetRelationshipRequest,
                        context: grpc.ServicerContext) -> graph_service_pb2.Relationship:
        if request.actor_id <= 0:
            invalid_argument(context, "actor_id", "must be a positive user id")
        if request.target_id <= 0:
            invalid_argument(context, "target_id", "must be a positive user id")
        if request.actor_id == request.target_id:
            invalid_argument(context, "target_id", "must differ from actor_id")
        state = self._state()
        store = state.store
        out = graph_service_pb2.Relationship(actor_id=request.actor_id, target_id=request.target_id)
        a, b = store.row(request.actor_id), store.row(request.target_id)
        if a < 0 or b < 0:
            return out
        now = store.clock.now()
        out.actor_follows_target = store.follows.contains(a, b)
        out.target_follows_actor = store.follows.contains(b, a)
        out.friends = store.is_friend(a, b)
        out.actor_blocked_target = store.blocks.contains(a, b)
        out.target_blocked_actor = store.blocks.contains(b, a)
        out.actor_muted_target = store.mutes.contains(a, b)
        out.actor_to_target_strength = store.strength(a, b, now)
        out.target_to_actor_strength = store.strength(b, a, now)
        forward, backward = store.interactions.get(a, b), store.interactions.get(b, a)
        if forward is not None:
            out.actor_last_interaction_time.CopyFrom(_stamp(forward[1]))
        if backward is not None:
            out.target_last_interaction_time.CopyFrom(_stamp(backward[1]))
        if caller_roles(self._config.tls, context) & TRUSTED_ROLES:
            out.mutual_friend_count = int(np.intersect1d(store.friends_of(a), store.friends_of(b),
                                                         assume_unique=True).shape[0])
        else:
            # What the actor may be told: a stranger's friends who are hidden
            # minors, banned or not discoverable do not count (as on the
            # suggestion page), or the count would reveal them one by one.
            out.mutual_friend_count = state.safety.nameable_mutual_count(store, a, b, now)
        return out

    def GetUser(self, request: graph_service_pb2.GetUserRequest,
                context: grpc.ServicerContext) -> graph_service_pb2.User:
        if request.user_id <= 0:
            invalid_argument(context, "user_id", "must be a positive user id")
        store = self._state().store
        row = store.row(request.user_id)
        if row < 0:
            abort(context, grpc.StatusCode.NOT_FOUND, f"user {request.user_id} is unknown", "USER_NOT_FOUND",
                  userId=str(request.user_id))
        user = graph_service_pb2.User(
            follower_count=int(store.followers(row).shape[0]),
            following_count=int(store.following(row).shape[0]),
            friend_count=int(store.friends_of(row).shape[0]),
        )
        profile = user.profile
        profile.user_id = request.user_id
        p = store.profiles
        if p.column("has_profile")[row]:
            for name in ("age_band", "message_privacy", "account_state", "age_assurance"):
                value = int(p.column(name)[row])
                if value:
                    setattr(profile, name, value)
            discoverable = int(p.column("discoverable")[row])
            if discoverable >= 0:
                profile.discoverable = bool(discoverable)
            region = decode_region(int(p.column("region")[row]))
            if region:
                profile.region_code = region
        return user
