"""What the rules read: the viewer's facts for one request (``Viewer``), a
batch of candidates (``Context``, for the vectorised rules) and one pair
(``Pair``, for the scalar twins of the send rules).

Orientation: the *viewer* is the one who would message (the suggestion's
viewer, the message's sender); a *candidate* is who would receive it.
What the rules read about the viewer (friends, blocks, reports, ...) is
gathered once per request in ``Viewer``, so the pipeline can filter its
ranked candidates in small batches ("filter and take") without paying for
it again. Membership tests use binary search over the store's sorted
neighbour lists instead of ``np.isin``."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from graph.store import GraphStore
from service.safety.ages import ADULT, UNSET_BAND, age_reading_one, age_readings, reach_bands
from service.safety.exposure import ImpressionLedger
from service.safety.guardian import Controls
from service.safety.policy import DAY, Policy, RegionRules
from service.safety.regions import RegionTable

_NO_ROWS = np.zeros(0, np.int32)


def member(sorted_values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per row: is it in ``sorted_values`` (ascending)? One binary search per
    row, so a hub's long list costs log(n), not a sort of it."""
    n = sorted_values.shape[0]
    if n == 0 or rows.shape[0] == 0:
        return np.zeros(rows.shape[0], bool)
    pos = sorted_values.searchsorted(rows)
    np.minimum(pos, n - 1, out=pos)
    return np.asarray(sorted_values[pos] == rows)


def _sorted(values: np.ndarray) -> np.ndarray:
    return np.sort(values) if values.shape[0] > 1 else values


class EngineView(Protocol):
    """What the rules ask of the safety engine (``SafetyEngine``): its
    caches and the impression ledger. A Protocol, so that this module does
    not import the engine, which imports the rules, which import this."""

    @property
    def ledger(self) -> ImpressionLedger: ...

    def region_table(self, policy: Policy) -> RegionTable: ...

    def controls_by_row(self, store: GraphStore) -> dict[int, Controls]: ...

    def suspicious(self, store: GraphStore, policy: Policy, rows: np.ndarray, now: float) -> np.ndarray: ...

    def suspicious_one(self, store: GraphStore, policy: Policy, row: int, now: float) -> bool: ...


class Viewer:
    """What the rules read about one viewer (or sender), each fact fetched
    from the store on first use and kept for the request. Never kept across
    requests: a block acknowledged before a call is seen by that call."""

    __slots__ = ("_blocks_in", "_blocks_out", "_controls", "_ext", "_followers", "_friends", "_inbound", "_logs",
                 "_mutes", "_reach", "_suspicious", "as_declared", "band", "engine", "minor", "now", "policy",
                 "reach_adult", "region", "regions", "row", "store")

    def __init__(self, engine: EngineView, store: GraphStore, policy: Policy, row: int, now: float, *,
                 as_declared: bool = False) -> None:
        self.engine = engine
        self.store = store
        self.policy = policy
        self.row = row
        self.now = now
        # as_declared: read every age at its current band, ignoring the
        # uncertain-age rule; only to explain what that rule changed.
        self.as_declared = as_declared
        if as_declared:
            protected = reach = int(store.profiles.column("age_band")[row])
        else:
            protected, reach = age_reading_one(store, row)
        self.band = protected
        self.minor = protected != ADULT  # as the one protected
        self.reach_adult = reach == ADULT  # as the one who reaches others
        self.regions = engine.region_table(policy)
        self.region = self.regions.of(int(store.profiles.column("region")[row]))
        self._ext: int | None = None
        self._friends: np.ndarray | None = None
        self._followers: np.ndarray | None = None
        self._blocks_out: np.ndarray | None = None
        self._blocks_in: np.ndarray | None = None
        self._mutes: np.ndarray | None = None
        self._inbound: np.ndarray | None = None
        self._logs: dict[str, np.ndarray] = {}
        self._suspicious: bool | None = None
        self._controls: dict[int, Controls] | None = None
        self._reach: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def ext(self) -> int:
        if self._ext is None:
            self._ext = self.store.ids.ext_of(self.row)
        return self._ext

    def friends(self) -> np.ndarray:
        """Sorted int32, as every list below unless said otherwise."""
        if self._friends is None:
            self._friends = self.store.friends_of(self.row)
        return self._friends

    def followers(self) -> np.ndarray:
        if self._followers is None:
            self._followers = self.store.followers(self.row)
        return self._followers

    def blocks_out(self) -> np.ndarray:
        if self._blocks_out is None:
            self._blocks_out = self.store.blocks.out(self.row)
        return self._blocks_out

    def blocks_in(self) -> np.ndarray:
        if self._blocks_in is None:
            self._blocks_in = self.store.blocks.in_(self.row)
        return self._blocks_in

    def mutes(self) -> np.ndarray:
        if self._mutes is None:
            self._mutes = self.store.mutes.out(self.row)
        return self._mutes

    def inbound(self) -> np.ndarray:
        """Who ever interacted with the viewer (wrote first, for the inbox)."""
        if self._inbound is None:
            self._inbound = self.store.interactions.in_(self.row)[0]
        return self._inbound

    def log(self, name: str) -> np.ndarray:
        """Sorted rows from the pair logs, by name: ``reported`` (whom the
        viewer reported), ``reporters``, ``dismissed``, ``unfollowed``,
        ``unblocked`` (whom the viewer unblocked) and ``unblockers``, each
        within its policy window."""
        out = self._logs.get(name)
        if out is None:
            s, p, now = self.store, self.policy, self.now
            if name == "reported":
                out = s.reports.targets_of(self.row)
            elif name == "reporters":
                out = s.reports.actors_about(self.row)
            elif name == "dismissed":
                out = s.dismissals.targets_of(self.row, now - p.dismiss_days * DAY)
            elif name == "unfollowed":
                out = s.unfollows.targets_of(self.row, now - p.unfollow_days * DAY)
            elif name == "unblocked":
                out = s.unblocks.targets_of(self.row, now - p.unblock_cooldown_days * DAY)
            else:
                assert name == "unblockers", name
                out = s.unblocks.actors_about(self.row, now - p.unblock_cooldown_days * DAY)
            out = self._logs[name] = _sorted(out)
        return out

    def suspicious(self) -> bool:
        if self._suspicious is None:
            self._suspicious = self.engine.suspicious_one(self.store, self.policy, self.row, self.now)
        return self._suspicious

    def controls(self) -> dict[int, Controls]:
        if self._controls is None:
            self._controls = self.engine.controls_by_row(self.store)
        return self._controls

    def minor_friend_reach(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows reachable through the viewer's friends who say they are
        minors, and through how many of them: (rows ascending, counts)."""
        if self._reach is None:
            friends = self.friends()
            # Only friends whose profile says minor count: an adult, or a
            # friend of unknown age (no profile, unset band), is never a
            # path to a minor; nor is a friend who ever declared an adult
            # age while uncertain (its reach reading).
            if self.as_declared:
                claimed = self.store.profiles.column("age_band")[friends]
            else:
                claimed = reach_bands(self.store, friends)
            minor_friends = friends[(claimed > UNSET_BAND) & (claimed < ADULT)]
            reach = self.store.gather_friends(minor_friends) if minor_friends.shape[0] else _NO_ROWS
            if reach.shape[0]:
                uniq, counts = np.unique(reach, return_counts=True)
                self._reach = (uniq, counts)
            else:
                self._reach = (_NO_ROWS, np.zeros(0, np.int64))
        return self._reach


class Context:
    """One batch of candidate rows (all inside the profile table) for one
    viewer; per-candidate facts computed once and only if a rule asks.

    ``alive``: when set, the candidates no earlier rule removed. A rule may
    then skip work for the others and answer anything for them (only the
    first reason of a removal is kept); None means every rule must answer
    for every row (the send path lists every reason)."""

    __slots__ = ("_bands", "_cols", "_follows_viewer", "_friends", "_minor", "_reach_adult", "_region", "alive", "n",
                 "now", "policy", "rows", "store", "stranger", "viewer")

    def __init__(self, viewer: Viewer, rows: np.ndarray, *, stranger: bool = False) -> None:
        self.viewer = viewer
        self.store = viewer.store
        self.policy = viewer.policy
        self.now = viewer.now
        self.rows = rows
        self.n = int(rows.shape[0])
        self.alive: np.ndarray | None = None
        # True: the rules see no tie between the viewer and the candidates
        # (neither friends nor a follow), as for a stranger: naming a friend
        # in common discloses that friend to the viewer as a stranger would
        # see them (see NAMEABLE_RULES).
        self.stranger = stranger
        self._cols: dict[str, np.ndarray] = {}
        self._bands: np.ndarray | None = None
        self._minor: np.ndarray | None = None
        self._reach_adult: np.ndarray | None = None
        self._friends: np.ndarray | None = None
        self._follows_viewer: np.ndarray | None = None
        self._region: np.ndarray | None = None

    def col(self, name: str) -> np.ndarray:
        out = self._cols.get(name)
        if out is None:
            out = self._cols[name] = self.store.profiles.column(name)[self.rows]
        return out

    def zeros(self) -> np.ndarray:
        return np.zeros(self.n, bool)

    def _read_ages(self) -> None:
        if self.viewer.as_declared:
            protected = reach = self.col("age_band")
        else:
            protected, reach = age_readings(self.store, self.rows)
        self._bands = protected
        self._reach_adult = reach == ADULT

    @property
    def bands(self) -> np.ndarray:
        """The candidates' protected readings."""
        if self._bands is None:
            self._read_ages()
            assert self._bands is not None
        return self._bands

    @property
    def minor(self) -> np.ndarray:
        """Candidates protected as minors (when contacted or suggested to)."""
        if self._minor is None:
            self._minor = self.bands != ADULT
        return self._minor

    @property
    def reach_adult(self) -> np.ndarray:
        """Candidates read as adults where they would reach minors."""
        if self._reach_adult is None:
            self._read_ages()
            assert self._reach_adult is not None
        return self._reach_adult

    @property
    def friends(self) -> np.ndarray:
        if self._friends is None:
            self._friends = self.zeros() if self.stranger else member(self.viewer.friends(), self.rows)
        return self._friends

    @property
    def follows_viewer(self) -> np.ndarray:
        """Candidate follows the viewer."""
        if self._follows_viewer is None:
            self._follows_viewer = self.zeros() if self.stranger else member(self.viewer.followers(), self.rows)
        return self._follows_viewer

    def rule(self, name: str) -> np.ndarray | int:
        """Per candidate, the stricter of viewer's and candidate's region
        values for a RegionRules field; one int when the policy has no
        regions."""
        regions = self.viewer.regions
        if len(regions.rules) == 1:
            return int(getattr(regions.rules[0], name))
        if self._region is None:
            self._region = regions.index[self.col("region")]
        return np.asarray(regions.values_for(self.viewer.region)[name][self._region])

    def suspicious(self, rows: np.ndarray) -> np.ndarray:
        return self.viewer.engine.suspicious(self.store, self.policy, rows, self.now)


class Pair:
    """One (viewer, candidate) pair, both rows inside the profile table: the
    scalar rules' view, with facts fetched on first use."""

    __slots__ = ("_follows_viewer", "_friends", "_rules", "band", "minor", "reach_adult", "row", "store", "viewer")

    def __init__(self, viewer: Viewer, row: int) -> None:
        self.viewer = viewer
        self.store = viewer.store
        self.row = row
        if viewer.as_declared:
            protected = reach = int(self.store.profiles.column("age_band")[row])
        else:
            protected, reach = age_reading_one(self.store, row)
        self.band = protected
        self.minor = protected != ADULT
        self.reach_adult = reach == ADULT
        self._friends: bool | None = None
        self._follows_viewer: bool | None = None
        self._rules: RegionRules | None = None

    def col(self, name: str) -> int:
        return int(self.store.profiles.column(name)[self.row])

    @property
    def friends(self) -> bool:
        if self._friends is None:
            self._friends = self.store.is_friend(self.viewer.row, self.row)
        return self._friends

    @property
    def follows_viewer(self) -> bool:
        if self._follows_viewer is None:
            self._follows_viewer = self.store.follows.contains(self.row, self.viewer.row)
        return self._follows_viewer

    @property
    def rules(self) -> RegionRules:
        if self._rules is None:
            v = self.viewer
            self._rules = v.regions.pair(v.region, v.regions.of(self.col("region")))
        return self._rules
