"""The synthetic network: deterministic, well formed, shaped like a social
network, with the demo's anchor users, and readable through the event log
formats."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from graph.eventlog import read_event_files
from graph.model import AccountState, AgeBand, EventKind, InteractionType, MessagePrivacy
from graph.synthetic import (
    REGIONS,
    NetworkSpec,
    SyntheticNetwork,
    demo_spec,
    generate_follows,
    generate_network,
    write_demo_logs,
)

SMALL = NetworkSpec(n_users=3_000, avg_follows=20.0, messages_per_user=10.0, reactions_per_user=4.0, seed=11)


@pytest.fixture(scope="module")
def small() -> SyntheticNetwork:
    return generate_network(SMALL)


@pytest.fixture(scope="module")
def demo() -> SyntheticNetwork:
    return generate_network(demo_spec())


def _keys(src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    return src * (n + 1) + dst


def _reciprocated(net: SyntheticNetwork) -> npt.NDArray[np.bool_]:
    n = net.spec.n_users
    f = net.follows
    return np.isin(_keys(f.dst, f.src, n), _keys(f.src, f.dst, n))


def _friends(net: SyntheticNetwork, user: int) -> set[int]:
    f = net.follows
    return set(f.dst[f.src == user].tolist()) & set(f.src[f.dst == user].tolist())


class TestNetworkSpec:
    @pytest.mark.parametrize(
        "change",
        [
            {"n_users": 1},
            {"avg_follows": -1.0},
            {"reciprocity": 1.5},
            {"community_affinity": -0.1},
            {"days": 0.0},
            {"n_communities": -3},
            {"popularity_exponent": 1.0},
        ],
    )
    def test_rejects_nonsense(self, change: dict[str, float]) -> None:
        """A spec that cannot describe a network is refused at construction."""
        with pytest.raises(ValueError, match=next(iter(change))):
            dataclasses.replace(SMALL, **change)  # type: ignore[arg-type]


class TestDeterminism:
    def test_same_seed_same_network(self, small: SyntheticNetwork) -> None:
        """Generating twice from one spec gives identical arrays and profiles."""
        again = generate_network(SMALL)
        for part in ("follows", "interactions", "blocks"):
            first, second = dataclasses.astuple(getattr(small, part)), dataclasses.astuple(getattr(again, part))
            for a, b in zip(first, second, strict=True):
                np.testing.assert_array_equal(a, b)
        assert small.profiles == again.profiles

    def test_other_seed_other_network(self, small: SyntheticNetwork) -> None:
        """A different seed gives a different graph."""
        other = generate_follows(dataclasses.replace(SMALL, seed=12))
        assert not np.array_equal(other[0][:1000], small.follows.src[:1000]) or not np.array_equal(
            other[1][:1000], small.follows.dst[:1000]
        )

    def test_generate_follows_matches_network(self, small: SyntheticNetwork) -> None:
        """generate_follows(spec) is exactly generate_network(spec).follows."""
        src, dst = generate_follows(SMALL)
        np.testing.assert_array_equal(src, small.follows.src)
        np.testing.assert_array_equal(dst, small.follows.dst)


class TestFollows:
    def test_well_formed(self, small: SyntheticNetwork) -> None:
        """Distinct pairs, no self loops, ids in 1..n, int64, times in the window."""
        f, n = small.follows, SMALL.n_users
        assert f.src.dtype == np.int64 and f.dst.dtype == np.int64
        assert not np.any(f.src == f.dst)
        assert np.unique(_keys(f.src, f.dst, n)).size == len(f)
        assert f.src.min() >= 1 and f.dst.min() >= 1 and max(f.src.max(), f.dst.max()) <= n
        assert SMALL.start_time <= f.time.min() and f.time.max() < SMALL.end_time

    def test_average_follows(self, small: SyntheticNetwork) -> None:
        """The follow count per user is close to avg_follows."""
        assert len(small.follows) / SMALL.n_users == pytest.approx(SMALL.avg_follows, rel=0.05)

    @pytest.mark.parametrize("reciprocity", [0.3, 0.5, 0.8])
    def test_reciprocity(self, reciprocity: float) -> None:
        """The fraction of follows whose reverse exists is about ``reciprocity``."""
        spec = dataclasses.replace(SMALL, reciprocity=reciprocity, messages_per_user=0.0, reactions_per_user=0.0)
        net = generate_network(spec)
        assert _reciprocated(net).mean() == pytest.approx(reciprocity, abs=0.05)

    def test_power_law_in_degree(self, small: SyntheticNetwork) -> None:
        """Popular accounts have far more followers than the typical one."""
        in_degree = np.bincount(small.follows.dst, minlength=SMALL.n_users + 1)[1:]
        assert in_degree.max() > 10 * np.median(in_degree)
        # Heavy tail: the top 1% of accounts hold several times their share
        # (uniform targets would give them about 2%).
        top = np.sort(in_degree)[-SMALL.n_users // 100 :]
        assert top.sum() > 0.06 * in_degree.sum()

    def test_communities(self, small: SyntheticNetwork) -> None:
        """Most follows stay inside the follower's community."""
        c = small.community
        inside = c[small.follows.src - 1] == c[small.follows.dst - 1]
        assert inside.mean() > 0.7

    @pytest.mark.parametrize("band", [AgeBand.AGE_13_15, AgeBand.AGE_16_17])
    def test_minors_follow_minors_of_their_age(self, small: SyntheticNetwork, band: AgeBand) -> None:
        """Minors' follows go mostly to minors of the same age band."""
        ages = small.profile_columns.age_band
        by_minor = ages[small.follows.src - 1] == band
        assert by_minor.sum() > 100
        assert (ages[small.follows.dst[by_minor] - 1] == band).mean() > 0.75


class TestProfiles:
    def test_one_per_user_in_order(self, small: SyntheticNetwork) -> None:
        """One profile per user id 1..n, in order."""
        assert [p.user_id for p in small.profiles] == list(range(1, SMALL.n_users + 1))

    def test_mix(self, small: SyntheticNetwork) -> None:
        """Every age band appears, mostly adults, with some missing bands;
        every privacy setting and account state; regions from the list;
        discoverable and age assurance both set and unset."""
        profiles = small.profiles
        bands = [p.age_band for p in profiles]
        assert set(bands) == set(AgeBand) - {AgeBand.UNSPECIFIED} | {None}
        assert bands.count(AgeBand.ADULT) > 0.7 * len(bands)
        assert 0 < bands.count(None) < 0.05 * len(bands)
        privacy = [p.message_privacy for p in profiles]
        assert set(privacy) == set(MessagePrivacy) - {MessagePrivacy.UNSPECIFIED}
        assert privacy.count(MessagePrivacy.EVERYONE) > len(privacy) / 2
        states = [p.account_state for p in profiles]
        assert set(states) == set(AccountState) - {AccountState.UNSPECIFIED}
        assert states.count(AccountState.ACTIVE) > 0.9 * len(states)
        assert {p.region_code for p in profiles} == set(REGIONS)
        assert {p.discoverable for p in profiles} == {None, True, False}
        assert None in {p.age_assurance for p in profiles} and len({p.age_assurance for p in profiles}) == 4


class TestInteractionsAndBlocks:
    def test_well_formed(self, small: SyntheticNetwork) -> None:
        """No self interactions or blocks, known types, times in the window,
        distinct block pairs."""
        i, b = small.interactions, small.blocks
        assert not np.any(i.src == i.dst) and not np.any(b.src == b.dst)
        assert set(np.unique(i.type).tolist()) == {int(t) for t in InteractionType if t}
        assert SMALL.start_time <= i.time.min() and i.time.max() < SMALL.end_time
        assert SMALL.start_time <= b.time.min() and b.time.max() < SMALL.end_time
        assert np.unique(_keys(b.src, b.dst, SMALL.n_users)).size == len(b) > 0

    def test_message_volume_and_friends(self, small: SyntheticNetwork) -> None:
        """About messages_per_user messages each, mostly between friends."""
        i, n = small.interactions, SMALL.n_users
        messages = i.type == InteractionType.MESSAGE
        assert messages.sum() / n == pytest.approx(SMALL.messages_per_user, rel=0.05)
        f = small.follows
        mutual = _reciprocated(small)
        friend_keys = _keys(f.src[mutual], f.dst[mutual], n)
        between_friends = np.isin(_keys(i.src[messages], i.dst[messages], n), friend_keys)
        assert between_friends.mean() > 0.5

    def test_minors_message_minors(self, small: SyntheticNetwork) -> None:
        """Messages from 13-17s go mostly to 13-17s."""
        ages = small.profile_columns.age_band
        minor = (ages == AgeBand.AGE_13_15) | (ages == AgeBand.AGE_16_17)
        i = small.interactions
        from_minor = minor[i.src - 1] & (i.type == InteractionType.MESSAGE)
        assert minor[i.dst[from_minor] - 1].mean() > 0.8

    def test_suspicious_adults(self, small: SyntheticNetwork) -> None:
        """Each suspicious adult is an active adult blocked by several distinct minors."""
        assert small.suspicious_adults.size >= 1
        ages = small.profile_columns.age_band
        for user in small.suspicious_adults.tolist():
            profile = small.profiles[user - 1]
            assert (profile.age_band, profile.account_state) == (AgeBand.ADULT, AccountState.ACTIVE)
            blockers = small.blocks.src[small.blocks.dst == user]
            minor_blockers = {u for u in blockers.tolist() if ages[u - 1] in (AgeBand.AGE_13_15, AgeBand.AGE_16_17)}
            assert len(minor_blockers) >= 3


class TestDemo:
    def test_spec(self) -> None:
        """The demo is about 5,000 users, seed 7, from 2024-01-01 UTC for 60 days."""
        spec = demo_spec()
        assert (spec.n_users, spec.seed, spec.start_time, spec.days) == (5_000, 7, 1_704_067_200.0, 60.0)

    def test_user_1_is_a_well_connected_active_adult(self, demo: SyntheticNetwork) -> None:
        """User 1: active adult, messages from everyone, many friends and
        many friends-of-friends."""
        p = demo.profiles[0]
        assert (p.user_id, p.age_band, p.account_state, p.message_privacy) == (
            1,
            AgeBand.ADULT,
            AccountState.ACTIVE,
            MessagePrivacy.EVERYONE,
        )
        friends = _friends(demo, 1)
        assert len(friends) >= 30
        friends_of_friends = set().union(*(_friends(demo, u) for u in friends)) - friends - {1}
        assert len(friends_of_friends) >= 200

    def test_user_2_is_an_active_16_17_with_friends(self, demo: SyntheticNetwork) -> None:
        """User 2: active 16-17 whose friends are mostly teens of the same age."""
        p = demo.profiles[1]
        assert (p.age_band, p.account_state) == (AgeBand.AGE_16_17, AccountState.ACTIVE)
        friends = _friends(demo, 2)
        assert len(friends) >= 10
        same_age = [demo.profiles[u - 1].age_band == AgeBand.AGE_16_17 for u in friends]
        assert sum(same_age) >= 0.8 * len(friends)

    def test_logs_round_trip(self, demo: SyntheticNetwork, tmp_path: Path) -> None:
        """write_demo_logs writes profiles first, then time-ordered edge events
        with unique ids; reading them back gives every event, equal to
        to_event_table."""
        paths = write_demo_logs(demo, tmp_path)
        assert [p.name for p in paths] == ["profiles.csv", "events.csv.gz"]
        table = read_event_files(paths, now=demo.spec.end_time)
        expected = demo.spec.n_users + len(demo.follows) + len(demo.interactions) + len(demo.blocks)
        assert len(table) == expected
        n = demo.spec.n_users
        assert (table.kind[:n] == EventKind.PROFILE).all() and [table.profiles[i] for i in range(n)] == demo.profiles
        edges = table.time[n:]
        assert (np.diff(edges) >= 0).all()
        assert len(set(table.event_id[n:].tolist())) == len(table) - n
        assert np.bincount(table.kind, minlength=11)[EventKind.FOLLOW] == len(demo.follows)
        direct = demo.to_event_table()
        for column in ("time", "kind", "actor", "target", "detail", "event_id"):
            np.testing.assert_array_equal(getattr(table, column), getattr(direct, column), err_msg=column)
