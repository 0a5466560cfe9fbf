"""Online fold-in and hiding through ApplyEvents on a real server."""

from __future__ import annotations

import grpc
import pytest

from contactgraph.v1 import graph_events_pb2 as ev_pb
from contactgraph.v1 import user_profile_pb2 as profile_pb
from graph.model import AccountState
from tests.support.rpc import apply, edge, message, serve_time_stamp
from tests.support.server import RunningServer

pytestmark = pytest.mark.integration

NEWCOMER = 9001


class TestFoldIn:
    def test_new_user_becomes_searchable_without_rebuild(self, fresh_server: RunningServer,
                                                         fresh_channel: grpc.Channel) -> None:
        """A user who appears after the snapshot and follows people gets an
        embedding from them at once: the search finds neighbours for them."""
        search = fresh_server.server.state.pipeline.search
        assert search.folded_in == 0
        apply(fresh_channel, edge("follow", NEWCOMER, 2, "fi-1"), edge("follow", NEWCOMER, 3, "fi-2"),
              message(NEWCOMER, 4, "fi-3"))
        store = fresh_server.server.state.store
        row = store.row(NEWCOMER)
        assert row >= search.vectors.shape[0]
        assert search.folded_in == 1
        rows, _ = search.neighbours(row, 5)
        assert rows.shape[0] > 0

    def test_banned_user_is_hidden_from_search(self, fresh_server: RunningServer,
                                               fresh_channel: grpc.Channel) -> None:
        """A ban applied through ApplyEvents takes the user out of every
        embedding search at once."""
        state = fresh_server.server.state
        banned = state.store.row(3)
        viewer = state.store.row(2)
        before, _ = state.pipeline.search.neighbours(viewer, 50)
        assert banned in before.tolist()
        profile = ev_pb.GraphEvent(event_id="ban-3", event_time=serve_time_stamp(), profile=profile_pb.UserProfile(
            user_id=3, account_state=int(AccountState.BANNED)))
        apply(fresh_channel, profile)
        after, _ = state.pipeline.search.neighbours(viewer, 50)
        assert banned not in after.tolist()
