"""The safety engine: every rule once, used by both the suggestion path and
the send path.

Orientation: the *viewer* is the one who would message (the suggestion's
viewer, the message's sender); a *candidate* is who would receive it.
Suggestion rules = every send rule + the suggestion-only rules, so a
suggested user can always be messaged (a property test checks).

Fail closed: unset age band, privacy or account state count as the most
restrictive value; a user without a profile is never suggested, never gets
suggestions and can neither send nor receive.

Speed. A rule is vectorised over a batch of candidate rows; a send rule
also has a scalar form for one (sender, recipient) pair, because most
send-time checks name one recipient and numpy's per-call overhead would
dominate them. The two forms sit side by side in the rule table below and
``tests/service/safety/test_safety_fastpath.py`` checks on random worlds that they agree
on every pair. What the rules read about the viewer (friends, blocks,
reports, ...) is gathered once per request in ``Viewer``, so the pipeline
can filter its ranked candidates in small batches ("filter and take")
without paying for it again. Membership tests use binary search over the
store's sorted neighbour lists instead of ``np.isin``."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from graph.model import (
    AccountState,
    AgeAssurance,
    AgeBand,
    Event,
    EventKind,
    InteractionType,
    MessagePrivacy,
    decode_region,
    encode_region,
)
from graph.store import GraphStore

from service.safety.exposure import ImpressionLedger
from service.safety.guardian import Controls, GuardianRegistry, Messaging
from service.safety.policy import DAY, Policy, PolicyHolder, RegionRules
from service.safety.reasons import FilterReason

# Plain ints: comparing a numpy array with an IntEnum member makes numpy
# probe the member for array protocols, which costs microseconds per rule.
_ADULT = int(AgeBand.ADULT)
_UNSET_BAND = int(AgeBand.UNSPECIFIED)
_ACTIVE = int(AccountState.ACTIVE)
_EVERYONE = int(MessagePrivacy.EVERYONE)
_FRIENDS = int(MessagePrivacy.FRIENDS)
_WEAK_A, _WEAK_B = int(AgeAssurance.UNSPECIFIED), int(AgeAssurance.DECLARED)
_NO_ONE = int(Messaging.NO_ONE)
_FRIENDS_ONLY = int(Messaging.FRIENDS_ONLY)
_NO_ROWS = np.zeros(0, np.int32)


class Decision(IntEnum):
    """Mirrors contactgraph.v1.Decision."""

    UNSPECIFIED = 0
    ALLOW = 1
    ALLOW_AS_REQUEST = 2
    DENY = 3


# -- age readings ----------------------------------------------------------
# An account's age is *uncertain* when it is weakly assured (assurance unset
# or DECLARED) and has declared more than one band, or when it ever declared
# a band younger than one it declared before (whatever the assurance now).
# Such an account has two readings, and every rule takes the one that is
# stricter for the *other* user (issue 20):
# - protected: where its own protections are at stake (it is the one
#   contacted or suggested, its own DM and suggestion age, guardian
#   controls, exposure caps, counting it as a minor who accused someone):
#   its youngest declared band when weakly assured; a strongly assured
#   (ESTIMATED, VERIFIED) band is taken at its word;
# - reach: where it reaches minors (it sends, it is suggested to a minor,
#   it is the friend through whom a minor would be found): its oldest
#   declared band when weakly assured or after any change toward younger,
#   since an assurance given for one band says nothing of a younger one
#   declared after it.
# A certain account's readings are both its current band; an unset band
# stays 0 in both (the most restrictive).
def _readings(band: np.ndarray, lowest: np.ndarray, highest: np.ndarray, assurance: np.ndarray,
              younger: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weak = (assurance == _WEAK_A) | (assurance == _WEAK_B)
    known = band > 0
    protected = np.where(known & weak & (lowest > 0), np.minimum(lowest, band), band).astype(np.int8)
    reach = np.where(known & (weak | younger), np.maximum(highest, band), band).astype(np.int8)
    return protected, reach


def age_readings(store: GraphStore, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (protected band, reach band), both int8."""
    p = store.profiles
    return _readings(p.column("age_band")[rows], p.column("min_band")[rows], p.column("max_band")[rows],
                     p.column("age_assurance")[rows], p.column("went_younger")[rows])


def effective_bands(store: GraphStore, rows: np.ndarray) -> np.ndarray:
    """Age band per row where its own protections are at stake (int8): the
    protected reading (see above); unset stays 0 (the most restrictive)."""
    return age_readings(store, rows)[0]


def reach_bands(store: GraphStore, rows: np.ndarray) -> np.ndarray:
    """Age band per row where it reaches minors (int8): the reach reading."""
    return age_readings(store, rows)[1]


def age_reading_one(store: GraphStore, row: int) -> tuple[int, int]:
    """``age_readings`` for one row, in plain Python (no numpy per call)."""
    p = store.profiles
    band = int(p.column("age_band")[row])
    if band <= 0:
        return band, band
    weak = int(p.column("age_assurance")[row]) in (_WEAK_A, _WEAK_B)
    lowest = int(p.column("min_band")[row])
    protected = min(lowest, band) if weak and lowest > 0 else band
    reach = max(int(p.column("max_band")[row]), band) if weak or bool(p.column("went_younger")[row]) else band
    return protected, reach


def effective_band(store: GraphStore, row: int) -> int:
    """``effective_bands`` for one row."""
    return age_reading_one(store, row)[0]


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


class _RegionTable:
    """One policy's region values as lookup tables: region code (uint16, as
    the profile column holds it) -> index into ``rules`` (0 = the base), so
    a batch's per-pair values are two array gathers."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.rules: list[RegionRules] = [policy.base, *policy.regions.values()]
        self.index = np.zeros(1 << 16, np.int16)
        self._pairs: dict[tuple[int, int], RegionRules] = {}
        self._per_viewer: dict[int, dict[str, np.ndarray]] = {}
        stray = []
        for i, code in enumerate(policy.regions, start=1):
            try:
                value = encode_region(code)
            except ValueError:
                value = -1
            if value >= 0 and decode_region(value) == code:
                self.index[value] = i
            else:
                stray.append((code, i))
        if stray:
            # A code that does not round-trip can still equal the decoding of
            # some stored value: match it the way Policy.region does.
            wanted = dict(stray)
            for value in range(1 << 16):
                position = wanted.get(decode_region(value))
                if position is not None:
                    self.index[value] = position

    def of(self, code: int) -> int:
        return int(self.index[code])

    def pair(self, a: int, b: int) -> RegionRules:
        """Policy.pair for two region indexes."""
        key = (a, b)
        rules = self._pairs.get(key)
        if rules is None:
            ra, rb = self.rules[a], self.rules[b]
            rules = self._pairs[key] = ra if ra == rb else ra.stricter(rb)
        return rules

    def values_for(self, viewer: int) -> dict[str, np.ndarray]:
        """Per RegionRules field, the pair's value for a candidate of each
        region index (int64, indexed like ``rules``)."""
        out = self._per_viewer.get(viewer)
        if out is None:
            pairs = [self.pair(viewer, i) for i in range(len(self.rules))]
            out = {name: np.array([int(getattr(r, name)) for r in pairs], np.int64)
                   for name in RegionRules.__dataclass_fields__}
            self._per_viewer[viewer] = out
        return out


class Viewer:
    """What the rules read about one viewer (or sender), each fact fetched
    from the store on first use and kept for the request. Never kept across
    requests: a block acknowledged before a call is seen by that call."""

    __slots__ = ("engine", "store", "policy", "row", "now", "as_declared", "band", "minor", "reach_adult",
                 "regions", "region", "_ext", "_friends", "_followers", "_blocks_out", "_blocks_in", "_mutes",
                 "_inbound", "_logs", "_suspicious", "_controls", "_reach")

    def __init__(self, engine: "SafetyEngine", store: GraphStore, policy: Policy, row: int, now: float, *,
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
        self.minor = protected != _ADULT  # as the one protected
        self.reach_adult = reach == _ADULT  # as the one who reaches others
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
            minor_friends = friends[(claimed > _UNSET_BAND) & (claimed < _ADULT)]
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

    __slots__ = ("viewer", "store", "policy", "rows", "n", "now", "alive", "stranger", "_cols", "_bands", "_minor",
                 "_reach_adult", "_friends", "_follows_viewer", "_region")

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
        self._reach_adult = reach == _ADULT

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
            self._minor = self.bands != _ADULT
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
        return regions.values_for(self.viewer.region)[name][self._region]

    def suspicious(self, rows: np.ndarray) -> np.ndarray:
        return self.viewer.engine.suspicious(self.store, self.policy, rows, self.now)


class Pair:
    """One (viewer, candidate) pair, both rows inside the profile table: the
    scalar rules' view, with facts fetched on first use."""

    __slots__ = ("viewer", "store", "row", "band", "minor", "reach_adult", "_friends", "_follows_viewer", "_rules")

    def __init__(self, viewer: Viewer, row: int) -> None:
        self.viewer = viewer
        self.store = viewer.store
        self.row = row
        if viewer.as_declared:
            protected = reach = int(self.store.profiles.column("age_band")[row])
        else:
            protected, reach = age_reading_one(self.store, row)
        self.band = protected
        self.minor = protected != _ADULT
        self.reach_adult = reach == _ADULT
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


RuleFn = Callable[[Context], np.ndarray]
PairRuleFn = Callable[[Pair], bool]


@dataclass(frozen=True)
class Rule:
    """A named rule: ``reject(ctx)`` is a bool per candidate, True to remove;
    ``reject_one(pair)``, for send rules, the same answer for one pair.
    ``narrows``: the rule reads ``ctx.alive`` to spare work on candidates
    already removed (set only where that work is heavy)."""

    name: str
    reason: FilterReason
    reject: RuleFn
    reject_one: PairRuleFn | None = None
    narrows: bool = False


# -- send rules (also applied to every suggestion) ------------------------
# Each vectorised rule is followed by its scalar twin.
def _self(ctx: Context) -> np.ndarray:
    return ctx.rows == ctx.viewer.row


def _self_one(p: Pair) -> bool:
    return p.row == p.viewer.row


def _missing_profile(ctx: Context) -> np.ndarray:
    return ~ctx.col("has_profile")


def _missing_profile_one(p: Pair) -> bool:
    return not p.col("has_profile")


def _account_state(ctx: Context) -> np.ndarray:
    return ctx.col("account_state") != _ACTIVE


def _account_state_one(p: Pair) -> bool:
    return p.col("account_state") != _ACTIVE


def _under_dm_age(ctx: Context) -> np.ndarray:
    # The pair's threshold (stricter region) binds both users: a viewer old
    # enough at home may still be too young for a stricter candidate's region.
    floor = ctx.rule("min_dm_band")
    bands = ctx.bands
    return np.asarray((bands < floor) | (bands == _UNSET_BAND) | (ctx.viewer.band < floor))


def _under_dm_age_one(p: Pair) -> bool:
    floor = int(p.rules.min_dm_band)
    return p.band < floor or p.band == _UNSET_BAND or p.viewer.band < floor


def _blocked(ctx: Context) -> np.ndarray:
    return member(ctx.viewer.blocks_out(), ctx.rows) | member(ctx.viewer.blocks_in(), ctx.rows)


def _blocked_one(p: Pair) -> bool:
    return p.store.is_blocked_either(p.viewer.row, p.row)


def _message_privacy(ctx: Context) -> np.ndarray:
    privacy = ctx.col("message_privacy")
    allowed = (privacy == _EVERYONE) | ((privacy == _FRIENDS) & ctx.friends)
    return ~allowed


def _message_privacy_one(p: Pair) -> bool:
    privacy = p.col("message_privacy")
    return not (privacy == _EVERYONE or (privacy == _FRIENDS and p.friends))


def _adult_to_minor_not_followed(ctx: Context) -> np.ndarray:
    # The sender reaches out: an uncertain sender is read at its oldest
    # declared band, the recipient at its youngest.
    if not ctx.viewer.reach_adult:
        return ctx.zeros()
    return ctx.minor & ~ctx.follows_viewer


def _adult_to_minor_not_followed_one(p: Pair) -> bool:
    return p.viewer.reach_adult and p.minor and not p.follows_viewer


def _suspicious_adult(ctx: Context) -> np.ndarray:
    # Whatever age the suspicious account claims: a suspicious viewer who
    # says they are a minor is still kept from minors.
    out = ctx.zeros()
    if ctx.viewer.minor:
        if ctx.alive is None:
            out |= ctx.suspicious(ctx.rows)
        else:
            out[ctx.alive] = ctx.suspicious(ctx.rows[ctx.alive])
    if ctx.viewer.suspicious():
        out |= ctx.minor
    return out


def _suspicious_adult_one(p: Pair) -> bool:
    v = p.viewer
    if v.minor and v.engine.suspicious_one(p.store, v.policy, p.row, v.now):
        return True
    return p.minor and v.suspicious()


def _guardian_removed(ctx: Context) -> np.ndarray:
    controls = ctx.viewer.controls()
    out = ctx.zeros()
    if not controls:
        return out
    mine = controls.get(ctx.viewer.row)
    if mine is not None and mine.removed:
        out |= np.isin(ctx.store.ids.ext(ctx.rows), np.fromiter(mine.removed, np.int64))
    viewer_ext = ctx.viewer.ext
    for i, row in enumerate(ctx.rows.tolist()):
        theirs = controls.get(row)
        if theirs is not None and viewer_ext in theirs.removed:
            out[i] = True
    return out


def _guardian_removed_one(p: Pair) -> bool:
    controls = p.viewer.controls()
    if not controls:
        return False
    mine = controls.get(p.viewer.row)
    if mine is not None and p.store.ids.ext_of(p.row) in mine.removed:
        return True
    theirs = controls.get(p.row)
    return theirs is not None and p.viewer.ext in theirs.removed


def _guardian_messaging(ctx: Context) -> np.ndarray:
    """A guardian's "who may message the child" limits the child's contacts
    both ways."""
    controls = ctx.viewer.controls()
    out = ctx.zeros()
    if not controls:
        return out
    mine = controls.get(ctx.viewer.row)
    if mine is not None:
        if mine.messaging == _NO_ONE:
            out[:] = True
        elif mine.messaging == _FRIENDS_ONLY:
            out |= ~ctx.friends
    for i, row in enumerate(ctx.rows.tolist()):
        theirs = controls.get(row)
        if theirs is None:
            continue
        level = theirs.messaging
        if level == _NO_ONE or (level == _FRIENDS_ONLY and not ctx.friends[i]):
            out[i] = True
    return out


def _guardian_messaging_one(p: Pair) -> bool:
    controls = p.viewer.controls()
    if not controls:
        return False
    for child in (p.viewer.row, p.row):
        c = controls.get(child)
        if c is not None and (c.messaging == _NO_ONE or (c.messaging == _FRIENDS_ONLY and not p.friends)):
            return True
    return False


# -- suggestion-only rules ---------------------------------------------
def _under_suggestion_age(ctx: Context) -> np.ndarray:
    floor = ctx.rule("min_suggestion_band")
    return np.asarray((ctx.bands < floor) | (ctx.viewer.band < floor))


def _minor_adult_not_friends(ctx: Context) -> np.ndarray:
    # A floor in code: no adult-minor suggestions between strangers. Each
    # side is read the way stricter for the other: the one who would be
    # protected as a minor, against the other read at its oldest band.
    v = ctx.viewer
    mixed = ctx.minor.copy() if v.reach_adult else ctx.zeros()
    if v.minor:
        mixed |= ctx.reach_adult
    return mixed & ~ctx.friends


def _minor_no_safe_connection(ctx: Context) -> np.ndarray:
    """A minor is suggested only after a minor-initiated follow or enough
    mutual friends who are minors themselves (never via adults)."""
    need = ctx.minor & ~ctx.friends & ~ctx.follows_viewer
    if ctx.alive is not None:
        need &= ctx.alive
    if not need.any():
        return need
    uniq, n = ctx.viewer.minor_friend_reach()
    counts = np.zeros(ctx.n, np.int64)
    if uniq.shape[0]:
        hit = member(uniq, ctx.rows)
        counts[hit] = n[uniq.searchsorted(ctx.rows[hit])]
    return need & (counts < ctx.rule("min_mutual_friends"))


def _muted(ctx: Context) -> np.ndarray:
    return member(ctx.viewer.mutes(), ctx.rows)


def _reported(ctx: Context) -> np.ndarray:
    return member(ctx.viewer.log("reported"), ctx.rows) | member(ctx.viewer.log("reporters"), ctx.rows)


def _dismissed(ctx: Context) -> np.ndarray:
    return member(ctx.viewer.log("dismissed"), ctx.rows)


def _recently_unfollowed(ctx: Context) -> np.ndarray:
    return member(ctx.viewer.log("unfollowed"), ctx.rows)


def _unblock_cooldown(ctx: Context) -> np.ndarray:
    return member(ctx.viewer.log("unblocked"), ctx.rows) | member(ctx.viewer.log("unblockers"), ctx.rows)


def _not_discoverable(ctx: Context) -> np.ndarray:
    # Unset means yes for adults and no for minors; friends already know
    # each other, so the setting guards only strangers.
    setting = ctx.col("discoverable")
    discoverable = (setting == 1) | ((setting == -1) & ~ctx.minor)
    return ~discoverable & ~ctx.friends


def _guardian_suggestions_off(ctx: Context) -> np.ndarray:
    controls = ctx.viewer.controls()
    off = [row for row, c in controls.items() if not c.suggestions_enabled]
    if not off:
        return ctx.zeros()
    return np.isin(ctx.rows, np.array(off, np.int32))


def _impression_fatigue(ctx: Context) -> np.ndarray:
    p = ctx.policy
    ledger = ctx.viewer.engine.ledger
    if ctx.alive is None or ctx.alive.all():
        return ledger.fatigued(ctx.viewer.ext, ctx.store.ids.ext(ctx.rows), p.max_impressions,
                               p.fatigue_window_days * DAY, ctx.now)
    out = ctx.zeros()
    out[ctx.alive] = ledger.fatigued(ctx.viewer.ext, ctx.store.ids.ext(ctx.rows[ctx.alive]), p.max_impressions,
                                     p.fatigue_window_days * DAY, ctx.now)
    return out


def _exposure_cap(ctx: Context) -> np.ndarray:
    # Stricter for minors: never above the adult cap, whatever the file says.
    adult_cap = ctx.policy.daily_cap_adult
    minor_cap = np.minimum(ctx.rule("daily_cap_minor"), adult_cap)
    ledger = ctx.viewer.engine.ledger
    # Nobody reached the lowest cap today: nobody is over theirs (exact, and
    # spares a dictionary look-up per candidate).
    if ledger.peak_today(ctx.now) < min(int(np.min(minor_cap)), adult_cap):
        return ctx.zeros()
    cap = np.where(ctx.minor, minor_cap, adult_cap)
    return np.asarray(ledger.exposures_today(ctx.store.ids.ext(ctx.rows), ctx.now) >= cap)


SEND_RULES: tuple[Rule, ...] = (
    Rule("self", FilterReason.SELF, _self, _self_one),
    Rule("missing_profile", FilterReason.MISSING_PROFILE, _missing_profile, _missing_profile_one),
    Rule("account_state", FilterReason.ACCOUNT_STATE, _account_state, _account_state_one),
    Rule("under_16", FilterReason.UNDER_16, _under_dm_age, _under_dm_age_one),
    Rule("blocked", FilterReason.BLOCKED, _blocked, _blocked_one),
    Rule("message_privacy", FilterReason.MESSAGE_PRIVACY, _message_privacy, _message_privacy_one),
    Rule("adult_to_minor_not_followed", FilterReason.ADULT_TO_MINOR_NOT_FOLLOWED, _adult_to_minor_not_followed,
         _adult_to_minor_not_followed_one),
    Rule("suspicious_adult", FilterReason.SUSPICIOUS_ADULT, _suspicious_adult, _suspicious_adult_one, narrows=True),
    Rule("guardian_removed_contact", FilterReason.GUARDIAN_REMOVED_CONTACT, _guardian_removed,
         _guardian_removed_one),
    Rule("guardian_messaging", FilterReason.GUARDIAN_MESSAGING_RESTRICTED, _guardian_messaging,
         _guardian_messaging_one),
)

SUGGESTION_ONLY_RULES: tuple[Rule, ...] = (
    Rule("under_suggestion_age", FilterReason.UNDER_16, _under_suggestion_age),
    Rule("minor_adult_not_friends", FilterReason.MINOR_ADULT_NOT_FRIENDS, _minor_adult_not_friends),
    Rule("minor_no_safe_connection", FilterReason.MINOR_NO_SAFE_CONNECTION, _minor_no_safe_connection,
         narrows=True),
    Rule("muted", FilterReason.MUTED, _muted),
    Rule("reported", FilterReason.REPORTED, _reported),
    Rule("dismissed", FilterReason.DISMISSED, _dismissed),
    Rule("recently_unfollowed", FilterReason.RECENTLY_UNFOLLOWED, _recently_unfollowed),
    Rule("unblock_cooldown", FilterReason.UNBLOCK_COOLDOWN, _unblock_cooldown),
    Rule("not_discoverable", FilterReason.NOT_DISCOVERABLE, _not_discoverable),
    Rule("guardian_suggestions_off", FilterReason.GUARDIAN_SUGGESTIONS_OFF, _guardian_suggestions_off),
    Rule("impression_fatigue", FilterReason.IMPRESSION_FATIGUE, _impression_fatigue, narrows=True),
    Rule("exposure_cap", FilterReason.EXPOSURE_CAP, _exposure_cap),
)

SUGGESTION_RULES: tuple[Rule, ...] = SEND_RULES + SUGGESTION_ONLY_RULES

# Who may be counted or named to a viewer as a friend in common with
# someone else ("mutual friends"). Naming M as a friend of T tells the
# viewer something about M that M's own settings and the minors' rules
# guard, so M must be someone the viewer could be shown as a stranger:
# these rules run with ``Context.stranger`` (the viewer's own friendship
# with M does not count, as ``not_discoverable`` and the adult/minor rules
# would otherwise let every friend through): no minor is named to an adult
# (``adult_to_minor_not_followed``), nor anyone under the DM or suggestion
# age, banned or otherwise inactive, without a profile, blocked either way,
# not discoverable, removed by a guardian or with suggestions turned off by
# one, nor a suspicious adult to a minor. The rules left out are about
# messaging (privacy setting, guardian messaging limits), the viewer's own
# history (mutes, reports, dismissals, fatigue, exposure caps), or
# introducing strangers (``minor_adult_not_friends`` would also hide an
# adult friend from a minor viewer, which protects no minor;
# ``minor_no_safe_connection``), none of which says whether M may be
# disclosed.
_NAMEABLE = frozenset({
    "self", "missing_profile", "account_state", "under_16", "blocked", "adult_to_minor_not_followed",
    "suspicious_adult", "guardian_removed_contact", "under_suggestion_age", "not_discoverable",
    "guardian_suggestions_off",
})
NAMEABLE_RULES: tuple[Rule, ...] = tuple(r for r in SUGGESTION_RULES if r.name in _NAMEABLE)
assert len(NAMEABLE_RULES) == len(_NAMEABLE), "a nameable rule is missing from SUGGESTION_RULES"


@dataclass(frozen=True)
class SafetyVerdict:
    keep: np.ndarray  # bool per candidate
    first_reason: list[FilterReason | None]  # the first rule that removed each
    removed: dict[FilterReason, int]  # removals counted by first reason


@dataclass(frozen=True)
class MessagingDecision:
    decision: Decision
    reasons: list[FilterReason]

    @property
    def allowed(self) -> bool:
        return self.decision != Decision.DENY


class SafetyEngine:
    def __init__(self, policy: PolicyHolder, guardians: GuardianRegistry, ledger: ImpressionLedger) -> None:
        self.policy = policy
        self.guardians = guardians
        self.ledger = ledger
        self._controls_cache: tuple[weakref.ref[GraphStore], int, dict[int, Controls]] | None = None
        self._regions: _RegionTable | None = None

    def observe(self, store: GraphStore, events: list[Event]) -> None:
        """Called after events are applied: counts a linked child's messages
        for the guardian overview and ends guardian links of a child whose
        profile now says adult."""
        for e in events:
            if e.kind == EventKind.INTERACTION and e.detail == InteractionType.MESSAGE:
                self.guardians.observe_message(e.actor, e.target, e.time)
            elif e.kind == EventKind.PROFILE and e.profile is not None and (
                    e.profile.age_band is not None or e.profile.age_assurance is not None):
                # A stronger assurance alone can make a weakly assured
                # former minor an adult.
                if self.guardians.links_of(e.actor):
                    row = store.row(e.actor)
                    minor = row >= 0 and effective_band(store, row) != _ADULT
                    self.guardians.end_links_if_adult(e.actor, minor)

    # -- shared facts ---------------------------------------------------
    def region_table(self, policy: Policy) -> _RegionTable:
        """The lookup tables of this policy (rebuilt when the policy is
        replaced; a policy is immutable)."""
        table = self._regions
        if table is None or table.policy is not policy:
            table = self._regions = _RegionTable(policy)
        return table

    def controls_by_row(self, store: GraphStore) -> dict[int, Controls]:
        """Guardian controls in force, keyed by the child's row. Controls
        of a child who is now an adult no longer apply."""
        version = self.guardians.version
        cached = self._controls_cache
        if cached is not None and cached[0]() is store and cached[1] == version:
            return cached[2]
        out: dict[int, Controls] = {}
        for ext, controls in self.guardians.controlled_children().items():
            row = store.row(ext)
            if row >= 0 and effective_band(store, row) != _ADULT:
                out[row] = controls
        self._controls_cache = (weakref.ref(store), version, out)
        return out

    def suspicious(self, store: GraphStore, policy: Policy, rows: np.ndarray, now: float) -> np.ndarray:
        """Accounts blocked or reported by at least k distinct minors: blocks
        in force count whenever they were made (fail closed); reports, and
        blocks lifted, count within the window (a child pressed into
        unblocking an adult is a known grooming pattern, so lifting a block
        does not clear the adult at once).

        Blocks in force plus everyone who ever reported or unblocked a row
        bound its accusers from above, so only rows with at least k of those (a few in
        a million) are counted exactly; the rest cannot be suspicious. The
        bound is read from the live store on every call, never cached."""
        out = np.zeros(rows.shape[0], bool)
        k = policy.suspicious_min_minors
        bound = store.accusation_bound(rows)
        for i in np.flatnonzero(bound >= k).tolist():
            out[i] = self._accused_by_minors(store, policy, int(rows[i]), now)
        return out

    def suspicious_one(self, store: GraphStore, policy: Policy, row: int, now: float) -> bool:
        """``suspicious`` for one row."""
        if store.accusation_bound_one(row) < policy.suspicious_min_minors:
            return False
        return self._accused_by_minors(store, policy, row, now)

    @staticmethod
    def _accused_by_minors(store: GraphStore, policy: Policy, row: int, now: float) -> bool:
        since = now - policy.suspicious_window_days * DAY
        accusers = np.union1d(np.union1d(store.blocks.in_(row), store.reports.actors_about(row, since)),
                              store.unblocks.actors_about(row, since))
        if accusers.shape[0] < policy.suspicious_min_minors:
            return False
        minors = int((effective_bands(store, accusers) != _ADULT).sum())
        return minors >= policy.suspicious_min_minors

    # -- viewers and senders ---------------------------------------------
    def sender_problems(self, store: GraphStore, row: int, policy: Policy | None = None) -> list[FilterReason]:
        """Why this user may not message anyone (empty if they may)."""
        p = store.profiles
        if row < 0 or row >= len(p) or not p.column("has_profile")[row]:
            return [FilterReason.VIEWER_MISSING_PROFILE]
        problems = []
        if int(p.column("account_state")[row]) != _ACTIVE:
            problems.append(FilterReason.VIEWER_ACCOUNT_STATE)
        band = effective_band(store, row)
        rules = (policy or self.policy.current).region(decode_region(int(p.column("region")[row])))
        if band == _UNSET_BAND or band < rules.min_dm_band:
            problems.append(FilterReason.VIEWER_UNDER_16)
        return problems

    def viewer_ineligibility(self, store: GraphStore, row: int) -> FilterReason | None:
        """Why this viewer gets no suggestions at all, or None."""
        policy = self.policy.current
        problems = self.sender_problems(store, row, policy)
        if problems:
            return problems[0]
        band = effective_band(store, row)
        if band < policy.region(decode_region(int(store.profiles.column("region")[row]))).min_suggestion_band:
            return FilterReason.VIEWER_UNDER_16
        controls = self.controls_by_row(store).get(row)
        if controls is not None and not controls.suggestions_enabled:
            return FilterReason.GUARDIAN_SUGGESTIONS_OFF
        return None

    def viewer(self, store: GraphStore, row: int, now: float) -> Viewer:
        """The facts the rules read about a viewer, fetched lazily and kept
        for one request (pass it to every ``filter_suggestions`` call of the
        request). ``row`` must be inside the profile table."""
        return Viewer(self, store, self.policy.current, row, now)

    # -- judging ---------------------------------------------------------
    @staticmethod
    def _known(store: GraphStore, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(rows as int32, mask of rows inside the profile table or None when
        all are). Rows outside fail closed as missing profiles and no other
        rule looks at them."""
        rows = np.asarray(rows, np.int32)
        known = (rows >= 0) & (rows < len(store.profiles))
        return rows, (None if known.all() else known)

    def _matrix(self, viewer: Viewer, rows: np.ndarray, rules: tuple[Rule, ...], *,
                stranger: bool = False) -> np.ndarray:
        """(len(rules), len(rows)) bool: which rule rejects which candidate,
        every rule for every candidate (``stranger``: see Context)."""
        rows, known = self._known(viewer.store, rows)
        out = np.zeros((len(rules), rows.shape[0]), bool)
        inside = rows if known is None else rows[known]
        if inside.shape[0]:
            ctx = Context(viewer, inside, stranger=stranger)
            for i, rule in enumerate(rules):
                if known is None:
                    out[i] = rule.reject(ctx)
                else:
                    out[i, known] = rule.reject(ctx)
        if known is not None:
            missing = next(i for i, r in enumerate(rules) if r.reason == FilterReason.MISSING_PROFILE)
            out[missing, ~known] = True
        return out

    def nameable(self, facts: Viewer, rows: np.ndarray) -> np.ndarray:
        """Per row (bool): may this user be counted or named to the viewer
        as a friend in common with someone (NAMEABLE_RULES, as a stranger)?
        A viewer who may not message anyone is shown no one (fail closed)."""
        if self.sender_problems(facts.store, facts.row, facts.policy):
            return np.zeros(np.asarray(rows).shape[0], bool)
        return ~np.asarray(self._matrix(facts, rows, NAMEABLE_RULES, stranger=True).any(axis=0))

    def nameable_friends(self, facts: Viewer) -> np.ndarray:
        """The viewer's friends who may be counted or named as friends in
        common (sorted int32 rows, a subset of ``facts.friends()``)."""
        friends = facts.friends()
        if friends.shape[0] == 0:
            return friends
        return np.asarray(friends[self.nameable(facts, friends)])

    def nameable_mutual_count(self, store: GraphStore, viewer: int, other: int, now: float) -> int:
        """Friends in common between two rows that ``viewer`` may be told
        of (0 when either row is unknown or the viewer has no profile)."""
        if not (0 <= viewer < len(store.profiles)) or other < 0:
            return 0
        mutual = np.intersect1d(store.friends_of(viewer), store.friends_of(other), assume_unique=True)
        if mutual.shape[0] == 0:
            return 0
        return int(self.nameable(self.viewer(store, viewer, now), mutual.astype(np.int32)).sum())

    def filter_suggestions(self, store: GraphStore, viewer: int, rows: np.ndarray, now: float, *,
                           facts: Viewer | None = None) -> SafetyVerdict:
        """Which candidates may be suggested to ``viewer`` (a row that may
        receive suggestions), and the first rule that removes each other.
        ``facts``: the request's ``viewer(...)``, to share across batches."""
        facts = facts if facts is not None and facts.row == viewer else self.viewer(store, viewer, now)
        rows, known = self._known(store, rows)
        rules = SUGGESTION_RULES
        matrix = np.zeros((len(rules), rows.shape[0]), bool)
        inside = rows if known is None else rows[known]
        if inside.shape[0]:
            ctx = Context(facts, inside)
            sub = matrix if known is None else np.zeros((len(rules), inside.shape[0]), bool)
            for i, rule in enumerate(rules):
                if rule.narrows and i:
                    # Only the first reason of a removal is reported, so a
                    # heavy rule may skip the candidates removed already.
                    alive = np.asarray(~sub[:i].any(axis=0))
                    if not alive.any():
                        break
                    ctx.alive = alive
                sub[i] = rule.reject(ctx)
            if known is not None:
                matrix[:, known] = sub
        if known is not None:
            matrix[next(i for i, r in enumerate(rules) if r.reason == FilterReason.MISSING_PROFILE), ~known] = True
        rejected = np.asarray(matrix.any(axis=0))
        first = np.where(rejected, matrix.argmax(axis=0), -1)
        first_reason: list[FilterReason | None] = [rules[i].reason if i >= 0 else None for i in first.tolist()]
        removed: dict[FilterReason, int] = {}
        if rejected.any():
            index, count = np.unique(first[rejected], return_counts=True)
            for i, c in zip(index.tolist(), count.tolist()):
                removed[rules[i].reason] = removed.get(rules[i].reason, 0) + c
        return SafetyVerdict(~rejected, first_reason, removed)

    def suggestion_reasons(self, store: GraphStore, viewer: int, row: int, now: float) -> list[FilterReason]:
        """Every rule that removes one candidate (for explanations)."""
        if viewer < 0 or viewer >= len(store.profiles):
            # No facts to read about a viewer without a profile; whoever asks
            # learns the viewer's own problem from viewer_ineligibility.
            column = self._unknown_viewer_column(store, row)
        else:
            column = self._matrix(self.viewer(store, viewer, now), np.array([row], np.int32),
                                  SUGGESTION_RULES)[:, 0]
        reasons = list(dict.fromkeys(SUGGESTION_RULES[i].reason for i in np.flatnonzero(column).tolist()))
        if reasons and self._age_uncertainty_removes(store, viewer, row, now, column):
            reasons.append(FilterReason.AGE_UNCERTAIN)
        return reasons

    def _age_uncertainty_removes(self, store: GraphStore, viewer: int, row: int, now: float,
                                 column: np.ndarray) -> bool:
        """Does a rule remove the candidate only because the viewer's, the
        candidate's or a mutual friend's age is uncertain (that is, not when
        every age is read at its current band)?"""
        if viewer < 0 or viewer >= len(store.profiles) or row < 0 or row >= len(store.profiles):
            return False
        declared = self._matrix(Viewer(self, store, self.policy.current, viewer, now, as_declared=True),
                                np.array([row], np.int32), SUGGESTION_RULES)[:, 0]
        return bool((column & ~declared).any())

    @staticmethod
    def _unknown_viewer_column(store: GraphStore, row: int) -> np.ndarray:
        column = np.zeros(len(SUGGESTION_RULES), bool)
        if row < 0 or row >= len(store.profiles) or not store.profiles.column("has_profile")[row]:
            column[[i for i, r in enumerate(SUGGESTION_RULES) if r.reason == FilterReason.MISSING_PROFILE]] = True
        return column

    def check_messaging(self, store: GraphStore, sender_id: int, recipient_ids: list[int],
                        now: float) -> list[MessagingDecision]:
        """May the sender message each recipient now? One decision each, in
        order. One recipient takes the scalar rules; more, the vectorised
        ones (the same answers: tests/service/safety/test_safety_fastpath.py)."""
        policy = self.policy.current
        sender = store.row(sender_id)
        problems = self.sender_problems(store, sender, policy)
        if problems:
            return [MessagingDecision(Decision.DENY, list(problems)) for _ in recipient_ids]
        viewer = Viewer(self, store, policy, sender, now)
        if len(recipient_ids) == 1:
            return [self.check_one(viewer, store.row(recipient_ids[0]))]
        return self.check_many(viewer, store.rows_of(np.array(recipient_ids, np.int64)))

    def check_one(self, viewer: Viewer, row: int) -> MessagingDecision:
        """The send decision for one recipient row (-1: unknown), scalar
        rules. ``viewer`` must be a sender without ``sender_problems``."""
        store = viewer.store
        if row < 0 or row >= len(store.profiles):
            return MessagingDecision(Decision.DENY, [FilterReason.MISSING_PROFILE])
        pair = Pair(viewer, row)
        reasons = [rule.reason for rule in SEND_RULES if rule.reject_one(pair)]  # type: ignore[misc]
        if reasons:
            return MessagingDecision(Decision.DENY, list(dict.fromkeys(reasons)))
        established = (pair.friends or pair.follows_viewer
                       or store.interactions.get(row, viewer.row) is not None)
        return MessagingDecision(Decision.ALLOW if established else Decision.ALLOW_AS_REQUEST, [])

    def check_many(self, viewer: Viewer, rows: np.ndarray) -> list[MessagingDecision]:
        """The send decisions for many recipient rows (-1: unknown),
        vectorised rules."""
        matrix = self._matrix(viewer, rows, SEND_RULES)
        denied = np.asarray(matrix.any(axis=0))
        established = np.zeros(rows.shape[0], bool)
        ok = np.flatnonzero(~denied)
        if ok.shape[0]:
            ctx = Context(viewer, rows[ok].astype(np.int32))
            established[ok] = ctx.friends | ctx.follows_viewer | member(viewer.inbound(), ctx.rows)
        decisions = []
        reason_of = [rule.reason for rule in SEND_RULES]
        for hits, deny, inbox in zip(matrix.T.tolist(), denied.tolist(), established.tolist()):
            if deny:
                reasons = list(dict.fromkeys(r for r, hit in zip(reason_of, hits) if hit))
                decisions.append(MessagingDecision(Decision.DENY, reasons))
            else:
                decisions.append(MessagingDecision(Decision.ALLOW if inbox else Decision.ALLOW_AS_REQUEST, []))
        return decisions
