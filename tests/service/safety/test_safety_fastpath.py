"""The safety engine's fast paths give the answers of the slow ones (issues
7 and 8): the scalar send rules agree with the vectorised ones on every
pair, filtering in batches with rules skipping removed candidates reports
the same verdicts and first reasons as every rule on every candidate, the
suspicious-account bound never hides a suspicious account, and the
pipeline's "filter and take" answers the head of its full answer.

Random worlds come from ``safety_oracle.world_plans`` (the same generator
as the oracle property tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from graph.config import GraphConfig
from graph.model import Event, EventKind, Surface
from graph.store import GraphStore
from service.pipeline.transforms import MutualFriends
from service.safety.engine import SUGGESTION_RULES, Decision
from service.safety.exposure import DAY, ImpressionLedger
from tests.support.safety_oracle import Harness, build, world_plans

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def users_of(plan: dict[str, Any]) -> list[int]:
    return [*range(1, plan["n"] + 1), plan["n"] + 50]  # plus one unknown user


def scalar_matches_vector(h: Harness, sender: int, users: list[int]) -> None:
    """Every recipient's decision and reasons are the same from the scalar
    rules (one recipient) and the vectorised ones (the whole list), and the
    one-recipient call agrees with the oracle."""
    engine, store = h.engine, h.store
    many = engine.check_messaging(store, sender, users, h.now)
    for r, batch in zip(users, many, strict=True):
        one = engine.check_messaging(store, sender, [r], h.now)[0]
        note(f"sender {sender} recipient {r} at {h.now}: one={one} many={batch}")
        assert one == batch
        assert one.decision.name == h.world.message_decision(sender, r)
    row = store.row(sender)
    if row >= 0 and not engine.sender_problems(store, row):
        viewer = engine.viewer(store, row, h.now)
        rows = store.rows_of(np.array(users, np.int64))
        assert engine.check_many(viewer, rows) == [engine.check_one(viewer, int(x)) for x in rows.tolist()]


class TestScalarSendRules:
    @PROPERTY
    @given(world_plans())
    def test_scalar_and_vector_agree_on_every_pair(self, plan: dict[str, Any]) -> None:
        """One recipient (scalar rules) and many (vectorised rules) give the
        same decision and the same reasons, in the same order, for every
        ordered pair, mid-sequence and at the end."""
        users = users_of(plan)

        def check(h: Harness, sender: int) -> None:
            scalar_matches_vector(h, sender, users)

        h = build(plan, on_check=check)
        for s in users:
            check(h, s)

    def test_unknown_recipient_fails_closed_with_one_reason(self) -> None:
        """An id the service never saw is denied as a missing profile, by
        either path, and nothing else is read about it."""
        h = Harness()
        h.profile(1)
        for recipients in ([99], [99, 98]):
            for d in h.engine.check_messaging(h.store, 1, recipients, h.now):
                assert d.decision == Decision.DENY and [r.name for r in d.reasons] == ["MISSING_PROFILE"]


def first_reasons_match(h: Harness, v: int, rng: np.random.Generator) -> None:
    """filter_suggestions, whose heavy rules skip candidates already
    removed, reports for each candidate the first reason of the full rule
    list; and cutting the candidates into batches sharing one Viewer
    changes nothing."""
    engine, store = h.engine, h.store
    row = store.row(v)
    if row < 0 or engine.viewer_ineligibility(store, row) is not None:
        return
    rows = np.arange(store.n_rows + 2, dtype=np.int32)  # two rows past the end: missing profiles
    rng.shuffle(rows)
    whole = engine.filter_suggestions(store, row, rows, h.now)
    for c, reason in zip(rows.tolist(), whole.first_reason, strict=True):
        every = engine.suggestion_reasons(store, row, c, h.now)
        assert reason == (every[0] if every else None), (v, c, every)
    facts = engine.viewer(store, row, h.now)
    cuts = sorted(rng.choice(np.arange(1, rows.shape[0]), size=min(3, rows.shape[0] - 1), replace=False).tolist())
    keep: list[bool] = []
    first: list[Any] = []
    removed: dict[Any, int] = {}
    for part in np.split(rows, cuts):
        verdict = engine.filter_suggestions(store, row, part, h.now, facts=facts)
        keep += verdict.keep.tolist()
        first += verdict.first_reason
        for r, n in verdict.removed.items():
            removed[r] = removed.get(r, 0) + n
    assert keep == whole.keep.tolist() and first == whole.first_reason and removed == whole.removed


class TestFilterSuggestions:
    @PROPERTY
    @given(world_plans(), st.integers(min_value=0, max_value=2**32 - 1))
    def test_first_reason_and_batches(self, plan: dict[str, Any], seed: int) -> None:
        """See first_reasons_match; for every viewer, mid-sequence too."""
        rng = np.random.default_rng(seed)
        h = build(plan, on_check=lambda h, v: first_reasons_match(h, v, rng))
        for v in range(1, plan["n"] + 1):
            first_reasons_match(h, v, rng)

    def test_rules_are_in_the_table_once(self) -> None:
        """Each rule has one name (metrics are labelled by the first reason)."""
        assert len({r.name for r in SUGGESTION_RULES}) == len(SUGGESTION_RULES)


class TestSuspiciousBound:
    @PROPERTY
    @given(world_plans())
    def test_engine_agrees_with_the_oracle_on_every_account(self, plan: dict[str, Any]) -> None:
        """Skipping accounts with fewer than k blocks plus reporters never
        misses a suspicious one (the oracle counts from the raw facts), for
        a batch and for one row."""
        h = build(plan)
        policy = h.holder.current
        rows = np.arange(h.store.n_rows, dtype=np.int32)
        batch = h.engine.suspicious(h.store, policy, rows, h.now)
        for row, got in zip(rows.tolist(), batch.tolist(), strict=True):
            want = h.world.suspicious(h.store.ids.ext_of(row))
            assert got == want == h.engine.suspicious_one(h.store, policy, row, h.now), row


BLOCK_EVENTS = st.lists(st.tuples(st.sampled_from(["block", "unblock", "report", "compact"]),
                                  st.integers(1, 6), st.integers(1, 6)), max_size=40)


class TestStoreQueries:
    @settings(max_examples=200, deadline=None)
    @given(BLOCK_EVENTS)
    def test_in_degrees_and_accusation_bound(self, steps: list[tuple[str, int, int]]) -> None:
        """EdgeSet.in_degrees counts exactly what in_ lists (base, overlay
        and compaction alike); accusation_bound is at least the distinct
        users who block or ever reported a row."""
        store = GraphStore.empty(GraphConfig())
        for i, (kind, a, b) in enumerate(steps):
            if kind == "compact":
                store.compact()
            elif a != b:
                store.apply(Event(f"e{i}", float(i), EventKind[kind.upper()], a, b,
                                  1 if kind == "report" else 0))
        rows = np.arange(-1, store.n_rows + 2, dtype=np.int32)
        degrees = store.blocks.in_degrees(rows)
        bound = store.accusation_bound(rows)
        for row, degree, most in zip(rows.tolist(), degrees.tolist(), bound.tolist(), strict=True):
            listed = store.blocks.in_(row) if 0 <= row < store.n_rows else np.zeros(0, np.int32)
            assert degree == listed.shape[0] == store.blocks.in_degree(row)
            accusers = set(listed.tolist()) | set(store.reports.actors_about(row).tolist())
            assert most >= len(accusers) and most == store.accusation_bound_one(row)

    def test_rows_of_matches_row(self) -> None:
        """rows_of answers row() for each id: unknown and erased give -1."""
        store = GraphStore.empty(GraphConfig())
        store.apply_batch([Event("a", 1.0, EventKind.FOLLOW, 1, 2), Event("b", 2.0, EventKind.FOLLOW, 3, 1),
                           Event("c", 3.0, EventKind.ERASE_USER, 3)])
        ids = np.array([1, 2, 3, 4, 2], np.int64)
        assert store.rows_of(ids).tolist() == [store.row(i) for i in ids.tolist()]
        assert store.rows_of(ids)[2] == -1 and store.rows_of(ids)[3] == -1


class TestExposurePeak:
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.integers(1, 4), st.sampled_from([0.0, 3600.0, DAY, -DAY, 2 * DAY])), max_size=30))
    def test_peak_bounds_every_count(self, shows: list[tuple[int, float]]) -> None:
        """No candidate's exposures on a day exceed peak_today, even when
        impressions arrive with clocks that went back (a request that read
        the time just before midnight)."""
        ledger = ImpressionLedger()
        now = 10 * DAY
        candidates = np.arange(1, 5)
        for candidate, step in shows:
            now += step
            ledger.record(99, [candidate], [[]], now)
            for t in (now, now - DAY, now + DAY):
                assert int(ledger.exposures_today(candidates, t).max()) <= ledger.peak_today(t)


def head_of_full_answer(h: Harness, v: int, rng: np.random.Generator) -> None:
    """suggest(limit, exclude) filtering down the ranking in batches is the
    head of the full answer (same ids, scores, reasons and mutual counts),
    with ``limit`` ids outside ``exclude`` unless the full answer has fewer."""
    pipeline = h.pipeline()
    # Tiny batches, so that the walk down the ranking takes several.
    pipeline.take.batch_per_wanted, pipeline.take.batch_margin = 1, 0
    for surface in (Surface.NEW_CONTACTS, Surface.SHARE_SHEET):
        full = pipeline.suggest(v, surface, h.now)
        ids = full.user_ids.tolist()
        exclude = [u for u in ids if rng.random() < 0.3]
        for limit in (1, 2, 5):
            part = pipeline.suggest(v, surface, h.now, limit=limit, exclude=exclude)
            n = part.user_ids.shape[0]
            assert part.user_ids.tolist() == ids[:n]
            assert part.scores.tolist() == full.scores[:n].tolist()
            assert part.reasons == full.reasons[:n]
            assert part.mutual_counts.tolist() == full.mutual_counts[:n].tolist()
            fresh = [u for u in part.user_ids.tolist() if u not in exclude]
            assert len(fresh) >= min(limit, len([u for u in ids if u not in exclude]))
            assert part.ineligible == full.ineligible


class TestFilterAndTake:
    @PROPERTY
    @given(world_plans(), st.integers(min_value=0, max_value=2**32 - 1))
    def test_pages_are_the_head_of_the_full_answer(self, plan: dict[str, Any], seed: int) -> None:
        """See head_of_full_answer, for every viewer."""
        rng = np.random.default_rng(seed)
        h = build(plan)
        for v in range(1, plan["n"] + 1):
            head_of_full_answer(h, v, rng)

    @PROPERTY
    @given(world_plans())
    def test_mutual_counts_from_the_source_equal_a_fresh_count(self, plan: dict[str, Any]) -> None:
        """Mutual-friend counts read from the friends-of-friends source's
        answer equal the store's friends_of_friends counts (0 for the viewer
        and the viewer's friends)."""
        h = build(plan)
        pipeline = h.pipeline()
        rows = np.arange(h.store.n_rows, dtype=np.int32)
        source = next(s for s in pipeline.sources_for(Surface.NEW_CONTACTS) if s.name == "friends_of_friends")
        mutual = MutualFriends(h.store, h.engine)
        for row in rows.tolist():
            fof, counts = h.store.friends_of_friends(row)
            want = np.zeros(rows.shape[0], np.int64)
            want[fof] = counts
            assert mutual.counts(row, rows).tolist() == want.tolist()
            result = source(row, h.now)
            assert mutual.counts(row, rows, result).tolist() == want.tolist()

    @PROPERTY
    @given(world_plans())
    def test_mutual_counts_when_the_source_is_cut(self, plan: dict[str, Any]) -> None:
        """A friends-of-friends source cut to its limit does not hold every
        count: the suggestions' mutual-friend counts are still the number of
        friends in common the viewer may be told of (the oracle's)."""
        from graph.retrieval import RetrievalConfig
        from service.pipeline import Pipeline

        h = build(plan)
        pipeline = Pipeline(h.store, h.search(), safety=h.engine, retrieval=RetrievalConfig(friends_of_friends_k=1))
        for v in range(1, plan["n"] + 1):
            ranked = pipeline.suggest(v, Surface.NEW_CONTACTS, h.now)
            assert ranked.mutual_counts.tolist() == [len(h.world.nameable_mutuals(v, u))
                                                     for u in ranked.user_ids.tolist()]

    def test_mutual_counts_of_a_hand_built_cut(self) -> None:
        """1 is friends with 2 and 3; 4 shares both, 5 shares 3. A source
        cut to one candidate keeps 4 only; 5 still shows one mutual friend."""
        from graph.retrieval import RetrievalConfig
        from service.pipeline import Pipeline

        h = Harness()
        for u in range(1, 6):
            h.profile(u)
        for a, b in ((1, 2), (1, 3), (2, 4), (3, 4), (3, 5)):
            h.befriend(a, b)
        pipeline = Pipeline(h.store, h.search(), safety=h.engine, retrieval=RetrievalConfig(friends_of_friends_k=1))
        ranked = pipeline.suggest(1, Surface.NEW_CONTACTS, h.now)
        got = dict(zip(ranked.user_ids.tolist(), ranked.mutual_counts.tolist(), strict=True))
        assert got[4] == 2 and got[5] == 1

