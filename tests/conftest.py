"""Shared fixtures: a tiny hand-built network, its snapshot, and real
servers on a free loopback port.

The network (external ids; "friends" means mutual follow; every profile is
ACTIVE, adult, EVERYONE privacy unless said otherwise)::

    viewer 1 --friends-- 2, 3, 4     1 messaged 2 (x20), 3 (x5), 4 (x1)
    safe friends-of-friends of 1:    10 (via 2, 3), 11 (via 2),
                                     12 (via 2, 3, 4), 15 (via 4), 16 (via 4)
    13 follows 1 (one way)           14 messaged 1, who never answered
    unsafe, each a friend of 2, 3 or 4 (so a friend-of-friend of 1):
      20 BANNED, 21 SUSPENDED, 22 DEACTIVATED, 23 UNDER_REVIEW,
      24 no account state (fail closed), 30 16_17 (discoverable),
      31 13_15, 32 UNDER_13, 33 16_17 (discoverable), 34 no age band,
      40 NO_ONE privacy, 41 FRIENDS privacy (not a friend of 1),
      42 blocked by 1, 43 blocked 1 (JSONL), 44 not discoverable,
      45 no privacy setting (JSONL profile), 50 no profile at all
    minor 30 messaged 2 (its adult friend), and minor 33 follows 30, so
    for 30 the only safe new contact is the other discoverable 16_17 minor
    who reached out first, 33 (a friend of 2).

Everyone 1 may be shown is therefore known exactly, whatever the embedding
finds: 1's friends are existing contacts (not new contacts) and every other
user is unsafe for 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, settings

from graph.clock import ManualClock
from graph.eventlog import write_edge_csv, write_profile_csv
from graph.model import AccountState, AgeAssurance, AgeBand, MessagePrivacy, Profile
from graph.rebuild import rebuild
from service.server.state import ServingState
from tests.support.server import RunningServer, load_state, start_server

# Hypothesis profiles for the stateful safety tests (tests/test_safety_stateful.py):
# "stateful" keeps `make test` fast; "fuzz" (`make fuzz`, HYPOTHESIS_PROFILE=fuzz)
# runs many more and longer sequences. Tests with their own @settings keep them.
settings.register_profile("stateful", max_examples=25, stateful_step_count=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "1500")), stateful_step_count=40,
                          deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

# Edge events happen from T0 on; profile CSV rows happen at the rebuild's
# clock (SNAPSHOT_TIME), the newest event; servers start a minute later.
T0 = 1_700_000_000
SNAPSHOT_TIME = T0 + 3600.0
SERVE_TIME = SNAPSHOT_TIME + 60.0

A, E, ACT = AgeBand.ADULT, MessagePrivacy.EVERYONE, AccountState.ACTIVE


def _adult(uid: int, **kw: object) -> Profile:
    fields: dict[str, object] = {"age_band": A, "message_privacy": E, "account_state": ACT}
    fields.update(kw)
    return Profile(user_id=uid, **fields)  # type: ignore[arg-type]


PROFILES: tuple[Profile, ...] = (
    _adult(1, region_code="GB"),
    _adult(2), _adult(3), _adult(4),
    _adult(10, region_code="GB", age_assurance=AgeAssurance.VERIFIED),
    _adult(11), _adult(12), _adult(13), _adult(14), _adult(15), _adult(16),
    _adult(20, account_state=AccountState.BANNED),
    _adult(21, account_state=AccountState.SUSPENDED),
    _adult(22, account_state=AccountState.DEACTIVATED),
    _adult(23, account_state=AccountState.UNDER_REVIEW),
    Profile(24, age_band=A, message_privacy=E),
    _adult(30, age_band=AgeBand.AGE_16_17, discoverable=True),
    _adult(31, age_band=AgeBand.AGE_13_15, discoverable=True),
    _adult(32, age_band=AgeBand.UNDER_13, discoverable=True),
    _adult(33, age_band=AgeBand.AGE_16_17, discoverable=True),
    Profile(34, message_privacy=E, account_state=ACT, discoverable=True),
    _adult(40, message_privacy=MessagePrivacy.NO_ONE),
    _adult(41, message_privacy=MessagePrivacy.FRIENDS),
    _adult(42), _adult(43),
    _adult(44, discoverable=False),
)

FRIEND_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 3), (1, 4),
    (10, 2), (10, 3), (11, 2), (12, 2), (12, 3), (12, 4), (15, 4), (16, 4),
    (20, 2), (21, 2), (22, 2), (23, 2), (24, 2),
    (30, 2), (31, 2), (32, 2), (33, 2), (34, 2),
    (40, 3), (41, 3), (42, 3), (43, 3), (44, 4), (45, 4), (50, 4),
)
MESSAGES: tuple[tuple[int, int, int], ...] = ((1, 2, 20), (1, 3, 5), (1, 4, 1), (14, 1, 2), (30, 2, 1))


@dataclass(frozen=True)
class TinyNetwork:
    """What the tests know about the hand-built network."""

    snapshot_dir: Path
    log_paths: tuple[Path, ...]
    snapshot_time: float = SNAPSHOT_TIME  # the newest event: the snapshot's "as of"
    serve_time: float = SERVE_TIME  # where every test server's ManualClock starts
    viewer: int = 1
    viewer_friends: tuple[int, ...] = (2, 3, 4)  # strongest contact first
    # Everyone the viewer may be suggested on new contacts, with the number
    # of friends in common.
    safe_for_viewer: dict[int, int] = field(default_factory=lambda: {
        10: 2, 11: 1, 12: 3, 15: 1, 16: 1, 13: 0, 14: 0})
    follows_viewer: tuple[int, ...] = (13,)
    messaged_viewer: tuple[int, ...] = (14,)
    # Users who must never be suggested to the viewer, and why.
    unsafe_for_viewer: dict[int, str] = field(default_factory=lambda: {
        20: "banned", 21: "suspended", 22: "deactivated", 23: "under review", 24: "no account state",
        30: "16_17 minor, not a friend", 31: "13_15", 32: "under 13", 33: "16_17 minor, not a friend",
        34: "no age band", 40: "NO_ONE privacy", 41: "FRIENDS privacy, not a friend",
        42: "blocked by the viewer", 43: "blocked the viewer", 44: "not discoverable",
        45: "no privacy setting", 50: "no profile",
    })
    minor_viewer: int = 30
    safe_for_minor_viewer: tuple[int, ...] = (33,)
    all_users: tuple[int, ...] = tuple(sorted(
        {p.user_id for p in PROFILES} | {u for pair in FRIEND_PAIRS for u in pair}))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_network_logs(directory: Path) -> tuple[Path, ...]:
    """The event logs of the tiny network: a profile CSV, an edge CSV and a
    JSON lines file, in the order a rebuild reads them."""
    directory.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[int, str, int, int]] = []
    t = T0 * 1000
    for a, b in FRIEND_PAIRS:
        rows += [(t, "follow", a, b), (t + 1, "follow", b, a)]
        t += 1000
    rows.append((t, "follow", 13, 1))
    rows.append((t, "follow", 33, 30))
    for a, b, n in MESSAGES:
        for _ in range(n):
            t += 1000
            rows.append((t, "message", a, b))
    rows.append((t + 1000, "block", 1, 42))
    profiles = write_profile_csv(directory / "profiles.csv", PROFILES)
    edges = write_edge_csv(
        directory / "edges.csv.gz", [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
        [r[3] for r in rows], [f"c-{i}" for i in range(len(rows))])
    jsonl = directory / "events.jsonl"
    late = T0 + 1800
    jsonl.write_text("\n".join(json.dumps(e) for e in (
        {"eventId": "j-1", "eventTime": _iso(late), "block": {"actorId": "43", "targetId": "1"}},
        {"eventId": "j-2", "eventTime": _iso(late),
         "profile": {"userId": "45", "ageBand": "AGE_BAND_ADULT", "accountState": "ACCOUNT_STATE_ACTIVE"}},
    )) + "\n")
    return profiles, edges, jsonl


@pytest.fixture(scope="session")
def tiny_network(tmp_path_factory: pytest.TempPathFactory) -> TinyNetwork:
    """The hand-built network, rebuilt once per session into a snapshot."""
    root = tmp_path_factory.mktemp("tiny_network")
    paths = write_network_logs(root / "logs")
    rebuild(list(paths), root / "snapshot", clock=ManualClock(SNAPSHOT_TIME))
    return TinyNetwork(snapshot_dir=root / "snapshot", log_paths=paths)


@pytest.fixture
def server_factory(tiny_network: TinyNetwork) -> Iterator[Callable[..., RunningServer]]:
    """``start(snapshot_dir=None, **ServerConfig fields)``: more servers of
    the test's own (the tiny network's snapshot by default), each stopped
    when the test ends."""
    started: list[RunningServer] = []

    def start(snapshot_dir: Path | None = None, **config: object) -> RunningServer:
        running = start_server(snapshot_dir or tiny_network.snapshot_dir, ManualClock(SERVE_TIME), **config)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.stop(0)


@pytest.fixture
def state_factory(tiny_network: TinyNetwork) -> Callable[[], ServingState]:
    """Fresh serving states over the tiny network's snapshot (not served)."""
    return lambda: load_state(tiny_network.snapshot_dir, ManualClock(SERVE_TIME))


@pytest.fixture(scope="session")
def server(tiny_network: TinyNetwork) -> Iterator[RunningServer]:
    """A server shared by the session: tests using it must not mutate it
    (no ApplyEvents, no clock changes)."""
    running = start_server(tiny_network.snapshot_dir, ManualClock(SERVE_TIME))
    yield running
    running.server.stop(0)


@pytest.fixture
def fresh_server(tiny_network: TinyNetwork) -> Iterator[RunningServer]:
    """A server of its own over a freshly loaded state, for tests that apply
    events or move the clock."""
    running = start_server(tiny_network.snapshot_dir, ManualClock(SERVE_TIME))
    yield running
    running.server.stop(0)


@pytest.fixture(scope="session")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    """A channel to the shared server."""
    with grpc.insecure_channel(server.target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


@pytest.fixture
def fresh_channel(fresh_server: RunningServer) -> Iterator[grpc.Channel]:
    """A channel to the function-scoped server."""
    with grpc.insecure_channel(fresh_server.target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch
