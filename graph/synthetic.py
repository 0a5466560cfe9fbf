"""A seeded synthetic social network: the ``make run`` demo data and the
benchmark graphs.

Size (over 400 lines): one generator whose private stages (population,
follows, profiles, interactions, blocks, writers) hand arrays to each
other; splitting it would make those arrays a public interface.

The shape is what the recommender and the safety rules care about:
communities (most follows stay inside one), a power-law in-degree (a few
accounts have very many followers), reciprocated follows ("friends"),
messages mostly between friends, minors who mostly follow and message minors
of their own age, a realistic mix of profiles including the awkward ones
(no age band, under 13, banned, not discoverable), and a few adults who
message many minors and get blocked by them.

Two users are always wired in (when there are follows) for the README's
examples: user 1, an active adult whom everyone may message, with 40 friends
in a community (so many friends-of-friends), and user 2, an active 16-17 with
15 friends among teens of the same age.

Everything is vectorised numpy: 1,000,000 users with 20,000,000 follows and
30,000,000 interactions take about 20 s on one core. Internally users are
rows ``0..n-1``; every array this module returns holds external ids
``1..n_users`` (int64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from . import arrays
from .eventlog import write_edge_csv, write_edge_parquet, write_profile_csv
from .model import AccountState, AgeAssurance, AgeBand, EventKind, InteractionType, MessagePrivacy, Profile
from .table import EventTable

__all__ = [
    "DEMO_START",
    "REGIONS",
    "Edges",
    "Interactions",
    "NetworkSpec",
    "ProfileColumns",
    "SyntheticNetwork",
    "demo_spec",
    "generate_follows",
    "generate_network",
    "write_demo_logs",
]

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I16 = npt.NDArray[np.int16]
I8 = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]

DAY = 86_400.0
DEMO_START = 1_704_067_200.0  # 2024-01-01T00:00:00Z: a fixed start keeps the demo reproducible.
REGIONS = ("GB", "US", "DE", "FR", "IN", "BR")
_REGION_WEIGHTS = (0.15, 0.35, 0.10, 0.10, 0.20, 0.10)

# Age cohorts: who mostly follows whom. Users with no age band live among
# adults (that is where such accounts come from: old sign-ups, imports).
_ADULTS, _OLDER_TEENS, _YOUNGER = 0, 1, 2

# Inside a community popularity is damped (weight ** power): otherwise one
# local star would soak up most of a small community's follows, which would
# then collapse as duplicates.
_LOCAL_POPULARITY_POWER = 0.75

# Each suspicious adult messages this many minors; this many of them block him.
_SUSPECT_CONTACTS = 12
_SUSPECT_BLOCKERS = 4

# The anchor users the README names: ``contactgraph probe suggest 1``.
ANCHOR_ADULT_ID = 1
ANCHOR_TEEN_ID = 2
_ANCHOR_ADULT_FRIENDS = 40
_ANCHOR_TEEN_FRIENDS = 15


@dataclass(frozen=True)
class NetworkSpec:
    """What to generate. Rates are per user over the whole window.

    - ``n_communities``: 0 picks about one community per 150 users; they are
      split between the age cohorts in proportion to their size.
    - ``reciprocity``: the fraction of follows whose reverse also exists,
      i.e. the probability that a follow is returned.
    - ``block_rate``: blocks per user.
    - ``reactions_per_user``: shares, comments, mentions and likes per user.
    - ``community_affinity``: the share of follows that stay inside the
      follower's community.
    - ``popularity_exponent``: accounts get a Pareto popularity weight w with
      P(w) ~ w^-exponent and followers in proportion to it (damped inside a
      community), so the in-degree has a power-law tail; smaller means a
      heavier tail.
    """

    n_users: int = 10_000
    avg_follows: float = 20.0
    n_communities: int = 0
    reciprocity: float = 0.5
    messages_per_user: float = 20.0
    block_rate: float = 0.01
    seed: int = 0
    start_time: float = DEMO_START
    days: float = 30.0
    reactions_per_user: float = 10.0
    community_affinity: float = 0.85
    popularity_exponent: float = 2.2

    def __post_init__(self) -> None:
        if self.n_users < 2:
            raise ValueError(f"n_users must be at least 2, got {self.n_users}")
        if self.n_users >= 2**31:
            raise ValueError(f"n_users must be below 2**31, got {self.n_users}")
        for name in ("avg_follows", "messages_per_user", "block_rate", "reactions_per_user"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("reciprocity", "community_affinity"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.n_communities < 0:
            raise ValueError(f"n_communities must be >= 0, got {self.n_communities}")
        if not self.days > 0:
            raise ValueError(f"days must be > 0, got {self.days}")
        if not self.popularity_exponent > 1.0:
            raise ValueError(f"popularity_exponent must be > 1, got {self.popularity_exponent}")

    @property
    def end_time(self) -> float:
        return self.start_time + self.days * DAY


def demo_spec() -> NetworkSpec:
    """The ``contactgraph demo`` data set: about 5,000 users over 60 days,
    roughly 350,000 events."""
    return NetworkSpec(
        n_users=5_000,
        avg_follows=25.0,
        n_communities=40,
        reciprocity=0.5,
        messages_per_user=40.0,
        block_rate=0.02,
        seed=7,
        start_time=DEMO_START,
        days=60.0,
        reactions_per_user=6.0,
    )


@dataclass(frozen=True, eq=False)
class Edges:
    """Directed user pairs: ``src``, ``dst`` int64 user ids and ``time``
    float64 Unix seconds, all shape (n,)."""

    src: I64
    dst: I64
    time: F64

    def __len__(self) -> int:
        return int(self.src.shape[0])


@dataclass(frozen=True, eq=False)
class Interactions:
    """``src`` interacted with ``dst``: int64 user ids, ``type`` int16
    ``InteractionType`` values, ``time`` float64 Unix seconds; shape (n,)."""

    src: I64
    dst: I64
    type: I16
    time: F64

    def __len__(self) -> int:
        return int(self.src.shape[0])


@dataclass(frozen=True, eq=False)
class ProfileColumns:
    """Profiles as columns, row ``i`` being user ``i + 1``; shape (n_users,).

    Enum columns (int8) hold the enum value, 0 meaning "not carried";
    ``region`` (int8) indexes ``REGIONS``; ``discoverable`` (int8) is -1 for
    not carried, else 0/1."""

    age_band: I8
    message_privacy: I8
    account_state: I8
    region: I8
    discoverable: I8
    age_assurance: I8

    def profile(self, row: int) -> Profile:
        band, privacy, state = int(self.age_band[row]), int(self.message_privacy[row]), int(self.account_state[row])
        disc, assurance = int(self.discoverable[row]), int(self.age_assurance[row])
        return Profile(
            user_id=row + 1,
            age_band=AgeBand(band) if band else None,
            message_privacy=MessagePrivacy(privacy) if privacy else None,
            account_state=AccountState(state) if state else None,
            region_code=REGIONS[int(self.region[row])],
            discoverable=None if disc < 0 else bool(disc),
            age_assurance=AgeAssurance(assurance) if assurance else None,
        )


@dataclass(frozen=True, eq=False)
class SyntheticNetwork:
    """A generated network. ``community`` (int32, shape (n_users,)) is each
    user's community; ``suspicious_adults`` (int64 ids) are the adults who
    message many minors and are blocked by several of them."""

    spec: NetworkSpec
    follows: Edges
    interactions: Interactions
    blocks: Edges
    profile_columns: ProfileColumns
    community: I32
    suspicious_adults: I64

    @cached_property
    def profiles(self) -> list[Profile]:
        """One full profile per user, ordered by user id. Built on first use:
        a million Profile objects cost more than the graph benchmarks need."""
        cols = self.profile_columns
        return [cols.profile(row) for row in range(self.spec.n_users)]

    def to_event_table(self, now: float | None = None, *, event_ids: bool = True) -> EventTable:
        """The same events ``write_demo_logs`` writes, without the files:
        profiles first (at ``now``, default the end of the window), then
        follows, interactions and blocks sorted by time (millisecond
        precision, as in the file). ``event_ids=False`` leaves ids "" and
        saves a Python string per event on large networks."""
        now = self.spec.end_time if now is None else now
        rows = _edge_rows(self)
        n_prof = self.spec.n_users
        profile_table = EventTable(
            time=np.full(n_prof, now, np.float64),
            kind=np.full(n_prof, int(EventKind.PROFILE), np.uint8),
            actor=np.arange(1, n_prof + 1, dtype=np.int64),
            target=np.zeros(n_prof, np.int64),
            detail=np.zeros(n_prof, np.int16),
            event_id=np.full(n_prof, "", object),
            profiles=dict(enumerate(self.profiles)),
        )
        edge_table = EventTable(
            time=np.minimum(rows.time_ms / 1000.0, now),
            kind=_CODE_KIND[rows.code],
            actor=rows.actor,
            target=rows.target,
            detail=_CODE_DETAIL[rows.code],
            event_id=_event_ids(len(rows.code)) if event_ids else np.full(len(rows.code), "", object),
        )
        return EventTable.concat([profile_table, edge_table])


# --- population: ages, cohorts, communities, popularity -----------------------


@dataclass(frozen=True, eq=False)
class _Population:
    """Internal rows 0..n-1. ``members`` lists rows sorted by community, so a
    community is the slice ``members[comm_start[c]:comm_start[c + 1]]`` and,
    communities being numbered cohort by cohort, so is a cohort
    (``cohort_start``)."""

    n: int
    age_band: I8
    cohort: I8
    community: I32
    region_of_community: I8
    members: I64
    comm_start: I64
    cohort_start: I64
    popularity: F64


def _streams(seed: int) -> list[np.random.Generator]:
    # Independent streams per stage, so that generate_follows(spec) equals
    # generate_network(spec).follows and a change to a later stage never
    # reshuffles an earlier one.
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]


def _population(spec: NetworkSpec, rng: np.random.Generator) -> _Population:
    n = spec.n_users
    bands = np.array([AgeBand.ADULT, AgeBand.AGE_16_17, AgeBand.AGE_13_15, AgeBand.UNDER_13, 0], np.int8)
    age_band = bands[rng.choice(len(bands), size=n, p=[0.81, 0.09, 0.07, 0.015, 0.015])]
    age_band[ANCHOR_ADULT_ID - 1] = AgeBand.ADULT
    age_band[ANCHOR_TEEN_ID - 1] = AgeBand.AGE_16_17
    cohort = np.full(n, _ADULTS, np.int8)
    cohort[age_band == AgeBand.AGE_16_17] = _OLDER_TEENS
    cohort[(age_band == AgeBand.AGE_13_15) | (age_band == AgeBand.UNDER_13)] = _YOUNGER

    wanted = spec.n_communities or max(1, round(n / 150))
    sizes = np.bincount(cohort, minlength=3)
    community = np.empty(n, np.int32)
    offset = 0
    for c in range(3):
        rows = np.flatnonzero(cohort == c)
        if rows.size == 0:
            continue
        k = int(min(rows.size, max(1, round(wanted * sizes[c] / n))))
        # Lognormal weights: communities of uneven size, as in real networks.
        weights = rng.lognormal(0.0, 0.6, size=k)
        cum = np.cumsum(weights)
        local = np.searchsorted(cum, rng.random(rows.size) * cum[-1], side="right")
        community[rows] = offset + np.minimum(local, k - 1)
        offset += k
    n_comm = offset

    members = np.argsort(community, kind="stable").astype(np.int64)
    comm_start = np.zeros(n_comm + 1, np.int64)
    np.cumsum(np.bincount(community, minlength=n_comm), out=comm_start[1:])
    cohort_start = np.zeros(4, np.int64)
    np.cumsum(sizes, out=cohort_start[1:])

    # Pareto weights with tail index (exponent - 1) give an in-degree with
    # P(k) ~ k^-exponent when targets are drawn in proportion to them.
    popularity = rng.pareto(spec.popularity_exponent - 1.0, size=n) + 1.0
    region_of_community = rng.choice(len(REGIONS), size=n_comm, p=_REGION_WEIGHTS).astype(np.int8)
    return _Population(
        n=n,
        age_band=age_band,
        cohort=cohort,
        community=community,
        region_of_community=region_of_community,
        members=members,
        comm_start=comm_start,
        cohort_start=cohort_start,
        popularity=popularity,
    )


def _cumulative(weights: F64) -> F64:
    """Leading-zero cumulative sum, shape (len + 1,)."""
    out = np.zeros(weights.shape[0] + 1, np.float64)
    np.cumsum(weights, out=out[1:])
    return out


def _pick_weighted(rng: np.random.Generator, cum: F64, lo: I64, hi: I64, members: I64) -> I64:
    """For each i, a row from ``members[lo[i]:hi[i]]`` drawn in proportion to
    its weight (``cum`` is the leading-zero cumulative weight over
    ``members``). Every range must be non-empty."""
    x = cum[lo] + rng.random(lo.shape[0]) * (cum[hi] - cum[lo])
    pos = np.searchsorted(cum, x, side="right") - 1
    np.clip(pos, lo, hi - 1, out=pos)
    return members[pos]


def _pick_uniform(rng: np.random.Generator, lo: I64, hi: I64, members: I64) -> I64:
    pos = lo + (rng.random(lo.shape[0]) * (hi - lo)).astype(np.int64)
    np.minimum(pos, hi - 1, out=pos)
    return members[pos]


# --- follows ---------------------------------------------------------------------


def _initiated_follows(spec: NetworkSpec, pop: _Population, rng: np.random.Generator) -> I64:
    """Sorted distinct pair keys ``src * n + dst`` (rows) of the follows
    users start themselves, before any are returned, with a heavy-tailed
    (lognormal) out-degree.

    How many: with T follows wanted in the end at reciprocity R, m initiated
    follows of which q are already mutual by chance, and x returned ones,
    T = m + x and R*T = q + 2x, so m = T(1 - R/2) + q/2."""
    n = pop.n
    total = spec.avg_follows * n
    base = total * (1.0 - spec.reciprocity / 2.0)
    if base < 1:
        return np.zeros(0, np.int64)
    per_user = base / n
    sigma = 0.9
    mu = math.log(per_user) - sigma * sigma / 2
    out_degree = np.minimum(np.rint(rng.lognormal(mu, sigma, size=n)).astype(np.int64), n - 1)
    keys = arrays.unique(np.concatenate([_draw_follows(spec, pop, rng, out_degree), _anchor_follows(pop, rng)]))
    drawn = int(out_degree.sum())
    # m = base + q/2 with q a fraction of m: measured once, since top-up
    # follows are mutual by chance about as often as the first ones.
    chance_mutual = _mutual_count(keys, n) / max(int(keys.shape[0]), 1)
    want = base / (1.0 - chance_mutual / 2.0)
    # Popular targets are drawn more than once; top up the lost follows in
    # proportion to each user's out-degree, allowing for the loss rate seen.
    for _ in range(4):
        deficit = want - keys.shape[0]
        if deficit <= 0.005 * want or drawn == 0:
            break
        efficiency = max(keys.shape[0] / drawn, 0.2)
        extra = rng.poisson(out_degree * (deficit / efficiency / max(int(out_degree.sum()), 1)))
        drawn += int(extra.sum())
        keys = arrays.unique(np.concatenate([keys, _draw_follows(spec, pop, rng, extra)]))
    return keys


def _reverse_keys(keys: I64, n: int) -> I64:
    src, dst = np.divmod(keys, n)
    return dst * n + src


def _draw_follows(spec: NetworkSpec, pop: _Population, rng: np.random.Generator, out_degree: I64) -> I64:
    """Pair keys for ``out_degree[u]`` follows by each user row ``u``; may
    repeat pairs, never self loops."""
    n = pop.n
    src = np.repeat(np.arange(n, dtype=np.int64), out_degree)
    dst = np.empty_like(src)

    inside = rng.random(src.shape[0]) < spec.community_affinity
    comm = pop.community[src[inside]]
    dst[inside] = _pick_weighted(
        rng,
        _cumulative(pop.popularity[pop.members] ** _LOCAL_POPULARITY_POWER),
        pop.comm_start[comm],
        pop.comm_start[comm + 1],
        pop.members,
    )

    # Across communities: mostly within the follower's age cohort, else
    # toward the adult cohort (teens follow adult celebrities; adults do not
    # seek out teens).
    outside = ~inside
    cohort = pop.cohort[src[outside]].astype(np.int64)
    if pop.cohort_start[_ADULTS + 1] > pop.cohort_start[_ADULTS]:
        cohort[rng.random(cohort.shape[0]) < 0.2] = _ADULTS
    dst[outside] = _pick_weighted(
        rng,
        _cumulative(pop.popularity[pop.members]),
        pop.cohort_start[cohort],
        pop.cohort_start[cohort + 1],
        pop.members,
    )
    keep = src != dst
    keys: I64 = src[keep] * n + dst[keep]
    return keys


def _anchor_follows(pop: _Population, rng: np.random.Generator) -> I64:
    """Mutual follows that make the README's users 1 and 2 well connected:
    user 1 with 40 members of its (adult) community, user 2 with 15 of its
    (16-17) community. Their friends' own friends supply the
    friends-of-friends."""
    n = pop.n
    keys: list[I64] = []
    for user_id, count in ((ANCHOR_ADULT_ID, _ANCHOR_ADULT_FRIENDS), (ANCHOR_TEEN_ID, _ANCHOR_TEEN_FRIENDS)):
        row = user_id - 1
        c = int(pop.community[row])
        mates = pop.members[pop.comm_start[c] : pop.comm_start[c + 1]]
        mates = mates[mates != row]
        if mates.size == 0:
            continue
        friends = rng.choice(mates, size=min(count, mates.size), replace=False).astype(np.int64)
        keys += [row * n + friends, friends * n + row]
    return np.concatenate(keys) if keys else np.zeros(0, np.int64)


@dataclass(frozen=True, eq=False)
class _Follows:
    """Rows, distinct pairs sorted by (src, dst); ``mutual``: the reverse
    pair is a follow too."""

    src: I64
    dst: I64
    time: F64
    mutual: npt.NDArray[np.bool_]


def _follow_rows(spec: NetworkSpec, pop: _Population, rng: np.random.Generator) -> _Follows:
    n = pop.n
    target = spec.reciprocity
    initiated = _initiated_follows(spec, pop, rng)
    m = int(initiated.shape[0])
    start, end = spec.start_time, spec.end_time
    times = start + rng.random(m) * (end - start)

    reverse = _reverse_keys(initiated, n)
    already = _mutual_mask(initiated, n)
    # Some follows are mutual by chance (or by anchoring); return just enough
    # of the others for the overall reciprocity to meet the target.
    q = int(already.sum())
    open_count = m - q
    p = (target * m - q) / (open_count * (2.0 - target)) if open_count and target < 1.0 else float(target >= 1.0)
    p = min(max(p, 0.0), 1.0)
    back = ~already & (rng.random(m) < p)
    back_time = np.minimum(times[back] + rng.exponential(DAY, size=int(back.sum())), end - 1.0)

    # Returned follows were not follows before, so the union has no
    # duplicates: ordering it is all that is left.
    keys = np.concatenate([initiated, reverse[back]])
    order = np.argsort(keys)
    src, dst = np.divmod(keys[order], n)
    mutual = np.concatenate([already | back, np.ones(back_time.shape[0], bool)])
    return _Follows(src, dst, np.concatenate([times, back_time])[order], mutual[order])


# Pair keys are int64 ``src * n + dst``. The helpers below lean on np.sort,
# which is many times faster than np.unique (hash based for integers since
# numpy 2.3) or np.searchsorted with random probes (a cache miss per level):
# at 20M follows that is seconds instead of minutes.


def _contains(sorted_keys: I64, probe: I64) -> npt.NDArray[np.bool_]:
    """Membership of ``probe`` in ``sorted_keys``; fastest when ``probe`` is
    sorted too."""
    if sorted_keys.shape[0] == 0:
        return np.zeros(probe.shape[0], bool)
    pos = np.searchsorted(sorted_keys, probe)
    np.minimum(pos, sorted_keys.shape[0] - 1, out=pos)
    found: npt.NDArray[np.bool_] = sorted_keys[pos] == probe
    return found


def _mutual_mask(sorted_keys: I64, n: int) -> npt.NDArray[np.bool_]:
    """For distinct sorted pair keys: whether each pair's reverse is present."""
    reverse = _reverse_keys(sorted_keys, n)
    order = np.argsort(reverse)
    mask = np.empty(sorted_keys.shape[0], bool)
    mask[order] = _contains(sorted_keys, reverse[order])
    return mask


def _mutual_count(keys: I64, n: int) -> int:
    """How many of the distinct pair keys have their reverse present: an
    unordered pair appearing twice is two mutual follows."""
    src, dst = np.divmod(keys, n)
    pairs = np.sort(np.minimum(src, dst) * n + np.maximum(src, dst))
    return 2 * int(np.count_nonzero(pairs[1:] == pairs[:-1]))


def generate_follows(spec: NetworkSpec) -> tuple[I64, I64]:
    """(src, dst): int64 user ids, shape (n_follows,), distinct pairs without
    self loops, sorted by (src, dst). Equal to ``generate_network(spec)``'s
    follows."""
    streams = _streams(spec.seed)
    pop = _population(spec, streams[0])
    follows = _follow_rows(spec, pop, streams[1])
    return follows.src + 1, follows.dst + 1


# --- profiles ------------------------------------------------------------------------


def _choose(rng: np.random.Generator, values: list[int], p: list[float], size: int) -> I8:
    return np.asarray(values, np.int8)[rng.choice(len(values), size=size, p=p)]


def _profile_columns(pop: _Population, rng: np.random.Generator) -> ProfileColumns:
    n = pop.n
    adult = pop.age_band == AgeBand.ADULT
    # Minors (and accounts of unknown age) start from more private defaults.
    privacy = np.where(
        adult,
        _choose(rng, [MessagePrivacy.EVERYONE, MessagePrivacy.FRIENDS, MessagePrivacy.NO_ONE], [0.75, 0.2, 0.05], n),
        _choose(rng, [MessagePrivacy.EVERYONE, MessagePrivacy.FRIENDS, MessagePrivacy.NO_ONE], [0.3, 0.6, 0.1], n),
    ).astype(np.int8)
    state = _choose(
        rng,
        [
            AccountState.ACTIVE,
            AccountState.DEACTIVATED,
            AccountState.SUSPENDED,
            AccountState.BANNED,
            AccountState.UNDER_REVIEW,
        ],
        [0.95, 0.02, 0.012, 0.008, 0.01],
        n,
    )
    # Communities are mostly local: a user usually shares its community's region.
    home = pop.region_of_community[pop.community]
    region = np.where(
        rng.random(n) < 0.85, home, _choose(rng, list(range(len(REGIONS))), list(_REGION_WEIGHTS), n)
    ).astype(np.int8)
    discoverable = np.where(
        adult, _choose(rng, [-1, 0, 1], [0.85, 0.1, 0.05], n), _choose(rng, [-1, 0, 1], [0.7, 0.25, 0.05], n)
    ).astype(np.int8)
    assurance = _choose(
        rng,
        [0, AgeAssurance.DECLARED, AgeAssurance.ESTIMATED, AgeAssurance.VERIFIED],
        [0.05, 0.6, 0.2, 0.15],
        n,
    )
    cols = ProfileColumns(
        age_band=pop.age_band.copy(),
        message_privacy=privacy,
        account_state=state,
        region=region,
        discoverable=discoverable,
        age_assurance=assurance,
    )
    gb = np.int8(REGIONS.index("GB"))
    _set_row(cols, ANCHOR_ADULT_ID - 1, AgeBand.ADULT, MessagePrivacy.EVERYONE, gb, AgeAssurance.VERIFIED)
    _set_row(cols, ANCHOR_TEEN_ID - 1, AgeBand.AGE_16_17, MessagePrivacy.FRIENDS, gb, AgeAssurance.ESTIMATED)
    return cols


def _set_row(cols: ProfileColumns, row: int, band: int, privacy: int, region: np.int8, assurance: int) -> None:
    cols.age_band[row] = band
    cols.message_privacy[row] = privacy
    cols.account_state[row] = AccountState.ACTIVE
    cols.region[row] = region
    cols.discoverable[row] = -1
    cols.age_assurance[row] = assurance


def _suspicious_adults(pop: _Population, cols: ProfileColumns, rng: np.random.Generator) -> I64:
    """A few active, messageable adults (rows) who will contact many minors."""
    minors = (pop.age_band == AgeBand.AGE_16_17) | (pop.age_band == AgeBand.AGE_13_15)
    candidates = np.flatnonzero(
        (pop.age_band == AgeBand.ADULT) & (cols.account_state == AccountState.ACTIVE)
    )
    candidates = candidates[candidates >= 2]  # never the anchor users
    if pop.n < 100 or candidates.size == 0 or int(minors.sum()) < _SUSPECT_CONTACTS:
        return np.zeros(0, np.int64)
    count = min(max(1, pop.n // 2_500), candidates.size)
    rows = np.sort(rng.choice(candidates, size=count, replace=False)).astype(np.int64)
    # Everything else about them looks ordinary, so only the minors' blocks
    # give them away.
    cols.message_privacy[rows] = MessagePrivacy.EVERYONE
    cols.discoverable[rows] = -1
    return rows


# --- interactions and blocks ------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Pairs:
    """Follow pairs to draw interactions from: rows, the time the follow
    started, and a weight (how much the pair talks)."""

    src: I64
    dst: I64
    start: F64
    weight: F64

    def select(self, mask: npt.NDArray[np.bool_]) -> _Pairs:
        return _Pairs(self.src[mask], self.dst[mask], self.start[mask], self.weight[mask])

    def reversed(self) -> _Pairs:
        return _Pairs(self.dst, self.src, self.start, self.weight)

    def sample(self, rng: np.random.Generator, count: int, end: float) -> tuple[I64, I64, F64]:
        """``count`` draws in proportion to the weights, each at a time after
        the pair's start and before ``end``."""
        if count <= 0 or self.src.shape[0] == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
        cum = np.cumsum(self.weight)
        # Sorted probes: the search walks the cumulative weights once instead
        # of missing the cache at every step (the order of draws is immaterial).
        idx = np.searchsorted(cum, np.sort(rng.random(count)) * cum[-1], side="right")
        np.minimum(idx, self.src.shape[0] - 1, out=idx)
        start = self.start[idx]
        return self.src[idx], self.dst[idx], start + rng.random(count) * (end - start)


def _suspect_messages(
    spec: NetworkSpec, pop: _Population, suspects: I64, rng: np.random.Generator
) -> tuple[I64, I64, F64]:
    """Each suspicious adult messages _SUSPECT_CONTACTS distinct minors
    (13-17): rows grouped by suspect."""
    minors = np.flatnonzero((pop.age_band == AgeBand.AGE_16_17) | (pop.age_band == AgeBand.AGE_13_15))
    if suspects.size == 0 or minors.size < _SUSPECT_CONTACTS:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    src = np.repeat(suspects, _SUSPECT_CONTACTS)
    dst = np.concatenate([rng.choice(minors, size=_SUSPECT_CONTACTS, replace=False) for _ in suspects]).astype(np.int64)
    # Leave the last fifth of the window for the blocks that follow.
    time = spec.start_time + rng.random(src.shape[0]) * (spec.end_time - spec.start_time) * 0.8
    return src, dst, time


def _interaction_rows(
    spec: NetworkSpec,
    pop: _Population,
    follows: _Follows,
    suspect_messages: tuple[I64, I64, F64],
    rng: np.random.Generator,
) -> tuple[I64, I64, I16, F64]:
    n = pop.n
    start, end = spec.start_time, spec.end_time
    # Heavy-tailed pair weights: a few conversations carry most messages.
    every = _Pairs(follows.src, follows.dst, follows.time, rng.lognormal(0.0, 1.0, size=int(follows.src.shape[0])))
    has_mutual = bool(follows.mutual.any())
    friends = every.select(follows.mutual) if has_mutual else every
    one_way = every.select(~follows.mutual)
    parts: list[tuple[I64, I64, F64, int]] = []

    def add(count: int, pool: _Pairs, kind: int) -> None:
        a, b, t = pool.sample(rng, count, end)
        parts.append((a, b, t, kind))

    n_msg = round(n * spec.messages_per_user)
    add(round(n_msg * (0.65 if has_mutual else 0.0)), friends, InteractionType.MESSAGE)
    # Followers write to people they follow; some of those go unanswered,
    # which the MESSAGED_YOU reason surfaces.
    add(round(n_msg * 0.15), one_way, InteractionType.MESSAGE)
    add(round(n_msg * 0.08), one_way.reversed(), InteractionType.MESSAGE)
    # Strangers in the same community (group chats, marketplace, ...).
    n_strangers = n_msg - sum(p[0].shape[0] for p in parts)
    if n_strangers > 0:
        a = rng.integers(0, n, size=n_strangers, dtype=np.int64)
        comm = pop.community[a]
        b = _pick_uniform(rng, pop.comm_start[comm], pop.comm_start[comm + 1], pop.members)
        t = start + rng.random(n_strangers) * (end - start)
        keep = a != b
        parts.append((a[keep], b[keep], t[keep], InteractionType.MESSAGE))

    # Reactions follow the follow graph: likes and comments on the posts of
    # whom one follows, shares and mentions mostly between friends.
    n_react = round(n * spec.reactions_per_user)
    react_kinds = [InteractionType.LIKE, InteractionType.COMMENT, InteractionType.SHARE, InteractionType.MENTION]
    counts = rng.multinomial(n_react, [0.5, 0.2, 0.2, 0.1])
    for react, count in zip(react_kinds, counts, strict=True):
        add(int(count), friends if react in (InteractionType.SHARE, InteractionType.MENTION) else every, react)

    s_src, s_dst, s_time = suspect_messages
    parts.append((s_src, s_dst, s_time, InteractionType.MESSAGE))

    src = np.concatenate([p[0] for p in parts])
    dst = np.concatenate([p[1] for p in parts])
    time = np.concatenate([p[2] for p in parts])
    kind = np.concatenate([np.full(p[0].shape[0], p[3], np.int16) for p in parts])
    return src, dst, kind, time


def _block_rows(
    spec: NetworkSpec,
    pop: _Population,
    messages: tuple[I64, I64, F64],
    suspect_messages: tuple[I64, I64, F64],
    rng: np.random.Generator,
) -> tuple[I64, I64, F64]:
    n = pop.n
    m_src, m_dst, m_time = messages
    start, end = spec.start_time, spec.end_time
    total = round(n * spec.block_rate)
    parts: list[tuple[I64, I64, F64]] = []
    # Half the blocks answer an unwanted message, half are someone in the
    # same community (an ex, a troll from the group).
    n_reply = total // 2 if m_src.shape[0] else 0
    if n_reply:
        i = rng.integers(0, m_src.shape[0], size=n_reply)
        t = np.minimum(m_time[i] + rng.exponential(DAY / 4, size=n_reply), end - 1.0)
        parts.append((m_dst[i], m_src[i], t))
    n_local = total - n_reply
    if n_local:
        a = rng.integers(0, n, size=n_local, dtype=np.int64)
        comm = pop.community[a]
        b = _pick_uniform(rng, pop.comm_start[comm], pop.comm_start[comm + 1], pop.members)
        parts.append((a, b, start + rng.random(n_local) * (end - start)))
    s_src, s_dst, s_time = suspect_messages
    if s_src.size:
        # Each suspect wrote to _SUSPECT_CONTACTS minors (rows grouped by
        # suspect); the first _SUSPECT_BLOCKERS of them block him.
        shape = (-1, _SUSPECT_CONTACTS)
        blockers = slice(0, _SUSPECT_BLOCKERS)
        t = s_time.reshape(shape)[:, blockers]
        t = np.minimum(t + rng.exponential(DAY / 2, size=t.shape), end - 1.0)
        parts.append((s_dst.reshape(shape)[:, blockers].ravel(), s_src.reshape(shape)[:, blockers].ravel(), t.ravel()))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    src = np.concatenate([p[0] for p in parts])
    dst = np.concatenate([p[1] for p in parts])
    time = np.concatenate([p[2] for p in parts])
    keep = src != dst
    src, dst, time = src[keep], dst[keep], time[keep]
    _, first = np.unique(src * n + dst, return_index=True)
    first.sort()
    return src[first], dst[first], time[first]


def generate_network(spec: NetworkSpec) -> SyntheticNetwork:
    """Generate the whole network; deterministic for ``spec`` (seed included)."""
    rng_pop, rng_follow, rng_profile, rng_interact, rng_block = _streams(spec.seed)
    pop = _population(spec, rng_pop)
    follows = _follow_rows(spec, pop, rng_follow)
    cols = _profile_columns(pop, rng_profile)
    suspects = _suspicious_adults(pop, cols, rng_profile) if spec.messages_per_user > 0 else np.zeros(0, np.int64)
    suspect_messages = _suspect_messages(spec, pop, suspects, rng_interact)
    i_src, i_dst, i_type, i_time = _interaction_rows(spec, pop, follows, suspect_messages, rng_interact)
    is_msg = i_type == InteractionType.MESSAGE
    b_src, b_dst, b_time = _block_rows(
        spec, pop, (i_src[is_msg], i_dst[is_msg], i_time[is_msg]), suspect_messages, rng_block
    )
    return SyntheticNetwork(
        spec=spec,
        follows=Edges(follows.src + 1, follows.dst + 1, follows.time),
        interactions=Interactions(i_src + 1, i_dst + 1, i_type, i_time),
        blocks=Edges(b_src + 1, b_dst + 1, b_time),
        profile_columns=cols,
        community=pop.community,
        suspicious_adults=suspects + 1,
    )


# --- files -----------------------------------------------------------------------------------------

# Row codes of the edge log: 0 follow, 1..5 the interaction types, 6 block.
_CODE_NAME = np.array(["follow", "message", "share", "comment", "mention", "like", "block"], object)
_CODE_KIND = np.array([EventKind.FOLLOW] + [EventKind.INTERACTION] * 5 + [EventKind.BLOCK], np.uint8)
_CODE_DETAIL = np.array([0, 1, 2, 3, 4, 5, 0], np.int16)
_BLOCK_CODE = 6


@dataclass(frozen=True, eq=False)
class _EdgeRows:
    time_ms: I64
    code: I8
    actor: I64
    target: I64


def _edge_rows(net: SyntheticNetwork) -> _EdgeRows:
    """Follows, interactions and blocks in one log, sorted by millisecond
    time; ties keep that order (a follow before a message in the same ms)."""
    f, i, b = net.follows, net.interactions, net.blocks
    time_ms = np.rint(np.concatenate([f.time, i.time, b.time]) * 1000.0).astype(np.int64)
    code = np.concatenate(
        [np.zeros(len(f), np.int8), i.type.astype(np.int8), np.full(len(b), _BLOCK_CODE, np.int8)]
    )
    actor = np.concatenate([f.src, i.src, b.src])
    target = np.concatenate([f.dst, i.dst, b.dst])
    order = np.argsort(time_ms, kind="stable")
    return _EdgeRows(time_ms[order], code[order], actor[order], target[order])


def _event_ids(count: int) -> npt.NDArray[np.object_]:
    return np.array([f"syn-{k}" for k in range(1, count + 1)], object)


def write_demo_logs(net: SyntheticNetwork, out_dir: str | Path) -> list[Path]:
    """Write ``profiles.csv`` and ``events.csv.gz`` (edge CSV with event ids
    ``syn-1``, ``syn-2``, ... in time order) into ``out_dir`` and return
    their paths in the order a rebuild reads them: profiles first."""
    return write_event_logs(net, out_dir, events_name="events.csv.gz")


def write_event_logs(net: SyntheticNetwork, out_dir: str | Path, *, events_name: str = "events.csv",
                     event_ids: bool = True) -> list[Path]:
    """Write ``profiles.csv`` and the edge log ``events_name`` (CSV, .csv.gz
    or .parquet by its suffix; event ids ``syn-1``, ``syn-2``, ... in time
    order unless ``event_ids`` is False) into ``out_dir``; return their
    paths in the order a rebuild reads them: profiles first."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profiles = write_profile_csv(out / "profiles.csv", net.profiles)
    rows = _edge_rows(net)
    writer = write_edge_parquet if events_name.endswith(".parquet") else write_edge_csv
    events = writer(
        out / events_name,
        rows.time_ms,
        _CODE_NAME[rows.code],
        rows.actor,
        rows.target,
        _event_ids(len(rows.code)) if event_ids else None,
    )
    return [profiles, events]
