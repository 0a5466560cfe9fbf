"""A small seeded temporal message network for the ranking and evaluation
tests: users in communities who mostly write to people they already know,
otherwise to someone in their own community, so new contacts are
predictable from the graph before them."""

from __future__ import annotations

import numpy as np

from graph.model import EventKind, InteractionType
from graph.table import EventTable
from service.cli.eval.data import Dataset, edge_table

DAY = 86_400.0
START = 1_600_000_000.0


def temporal_messages(n_users: int = 120, n_events: int = 2500, communities: int = 6, days: float = 100.0,
                      seed: int = 3) -> Dataset:
    rng = np.random.default_rng(seed)
    community = rng.integers(0, communities, n_users)
    members = [np.flatnonzero(community == c) for c in range(communities)]
    known: list[list[int]] = [[] for _ in range(n_users)]
    activity = rng.pareto(1.5, n_users) + 1.0
    p_send = activity / activity.sum()
    src = np.zeros(n_events, np.int64)
    dst = np.zeros(n_events, np.int64)
    for i in range(n_events):
        u = int(rng.choice(n_users, p=p_send))
        if known[u] and rng.random() < 0.6:
            v = int(rng.choice(known[u]))
        elif rng.random() < 0.85:
            v = int(rng.choice(members[community[u]]))
        else:
            v = int(rng.integers(0, n_users))
        if v == u:
            v = (u + 1) % n_users
        src[i], dst[i] = u + 1, v + 1
        if v not in known[u]:
            known[u].append(v)
        if u not in known[v] and rng.random() < 0.5:
            known[v].append(u)
    time = START + np.sort(rng.uniform(0, days * DAY, n_events))
    table = edge_table(src, dst, time, np.full(n_events, int(EventKind.INTERACTION)),
                       np.full(n_events, int(InteractionType.MESSAGE)))
    return Dataset("synthetic", table)


def with_events_after(table: EventTable, cut: float, seed: int) -> EventTable:
    """The same table with every edge event at or after ``cut`` replaced by
    different random messages (same times): another test window."""
    rng = np.random.default_rng(seed)
    after = (table.time >= cut) & (table.kind == EventKind.INTERACTION)
    users = np.unique(table.actor[table.kind == EventKind.PROFILE])
    out = EventTable(table.time.copy(), table.kind.copy(), table.actor.copy(), table.target.copy(),
                     table.detail.copy(), table.event_id.copy(), dict(table.profiles))
    k = int(after.sum())
    a = rng.choice(users, k)
    b = rng.choice(users, k)
    b = np.where(a == b, users[(np.searchsorted(users, b) + 1) % users.shape[0]], b)
    out.actor[after] = a
    out.target[after] = b
    return out
