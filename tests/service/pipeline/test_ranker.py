"""The learned ranker: training sees only history, the exported model
scores like scikit-learn's, and the pipeline uses it when it is there."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graph.ann import VectorSearch
from graph.config import GraphConfig
from graph.contacts import DAY, ContactConfig
from graph.embedding import EmbeddingConfig
from graph.model import EventKind, InteractionType, Surface
from graph.ranking import (
    ModelError,
    RankerTrainingConfig,
    RankingModel,
    check_export,
    fit,
    training_data,
    user_weights,
)
from graph.rebuild import Built, build
from service.cli.eval.data import edge_table
from service.pipeline import Pipeline
from service.pipeline.ranker import LearnedRanker, LinearRanker
from tests.support.temporal import temporal_messages, with_events_after

FAST = RankerTrainingConfig(n_estimators=30, label_fractions=(0.3,))


@pytest.fixture(scope="module")
def dataset_and_cut() -> tuple[object, float]:
    ds = temporal_messages()
    return ds, float(np.quantile(ds.edge_times, 0.8))


@pytest.fixture(scope="module")
def built(dataset_and_cut: tuple[object, float]) -> Built:
    ds, cut = dataset_and_cut
    return build(ds.table, cut, ranker=FAST)  # type: ignore[attr-defined]


class TestTraining:
    def test_test_window_does_not_change_the_model(self, dataset_and_cut: tuple[object, float],
                                                   built: Built) -> None:
        """Replacing every event at or after the cut (the test window's
        labels) leaves the fitted model bit-identical."""
        ds, cut = dataset_and_cut
        assert built.model is not None
        other = with_events_after(ds.table, cut, seed=99)  # type: ignore[attr-defined]
        assert not np.array_equal(other.target, ds.table.target)  # type: ignore[attr-defined]
        again = build(other, cut, ranker=FAST)
        assert again.model is not None
        assert json.dumps(again.model.to_json(), sort_keys=True) == json.dumps(built.model.to_json(), sort_keys=True)

    def test_history_does_change_the_model(self, dataset_and_cut: tuple[object, float], built: Built) -> None:
        """The check above is not vacuous: other history, another model."""
        ds, cut = dataset_and_cut
        earlier = float(np.quantile(ds.edge_times, 0.6))  # type: ignore[attr-defined]
        other = with_events_after(ds.table, earlier, seed=5)  # type: ignore[attr-defined]
        again = build(other, cut, ranker=FAST)
        assert again.model is not None and built.model is not None
        assert again.model.to_json()["sha256"] != built.model.to_json()["sha256"]

    def test_trees_score_like_scikit_learn(self, dataset_and_cut: tuple[object, float]) -> None:
        """The numpy scorer of the exported trees equals scikit-learn's
        decision function for the same fit."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        ds, cut = dataset_and_cut
        data = training_data(ds.table, cut, GraphConfig(), FAST, EmbeddingConfig(),  # type: ignore[attr-defined]
                             ContactConfig())
        assert data is not None and 0 < data.y.sum() < data.y.shape[0]
        model = fit(data, FAST)
        assert model is not None
        reference = HistGradientBoostingClassifier(
            max_iter=FAST.n_estimators, learning_rate=FAST.learning_rate, max_leaf_nodes=FAST.max_leaf_nodes,
            min_samples_leaf=FAST.min_samples_leaf, l2_regularization=FAST.l2_regularization,
            early_stopping=False, random_state=FAST.seed).fit(data.x, data.y,
                                                              sample_weight=user_weights(data, FAST))
        np.testing.assert_allclose(model.score(data.x), reference.decision_function(data.x), rtol=0, atol=1e-9)

    def test_an_export_that_scores_differently_is_refused(self, dataset_and_cut: tuple[object, float]) -> None:
        """check_export, which fit runs on every export, refuses a model
        whose trees do not reproduce scikit-learn's scores (as a release
        that moved its private tree arrays would give) and passes the
        faithful one."""
        ds, cut = dataset_and_cut
        data = training_data(ds.table, cut, GraphConfig(), FAST, EmbeddingConfig(),  # type: ignore[attr-defined]
                             ContactConfig())
        assert data is not None
        model = fit(data, FAST)
        assert model is not None
        check_export(model, model.score, data.x)
        with pytest.raises(ModelError, match="differ from scikit-learn"):
            check_export(model, lambda x: model.score(x) + 0.01, data.x)

    def test_logistic_model_round_trips(self, dataset_and_cut: tuple[object, float]) -> None:
        """A logistic model survives JSON and scores the same after."""
        ds, cut = dataset_and_cut
        config = RankerTrainingConfig(kind="logistic")
        data = training_data(ds.table, cut, GraphConfig(), config, EmbeddingConfig(),  # type: ignore[attr-defined]
                             ContactConfig())
        assert data is not None
        model = fit(data, config)
        assert model is not None
        loaded = RankingModel.from_json(json.loads(json.dumps(model.to_json())))
        assert loaded.score(data.x[:50]).tolist() == model.score(data.x[:50]).tolist()


class TestModelFile:
    def test_round_trip_and_checksum(self, built: Built) -> None:
        """JSON in, same scores out; a changed number is refused."""
        assert built.model is not None
        data = json.loads(json.dumps(built.model.to_json()))
        x = np.random.default_rng(0).standard_normal((20, len(data["features"])))
        assert RankingModel.from_json(data).score(x).tolist() == built.model.score(x).tolist()
        data["trees"][0]["value"][0] += 1.0
        with pytest.raises(ModelError):
            RankingModel.from_json(data)

    def test_other_features_refused(self, built: Built) -> None:
        assert built.model is not None
        params = dict(built.model.params, features=["something_else"])
        with pytest.raises(ModelError):
            RankingModel(params)


class TestPipelineRanker:
    def test_learned_when_model_present(self, built: Built) -> None:
        """With a model the pipeline ranks with it; new contacts exclude
        everyone the viewer already messaged; the list is deterministic."""
        search = VectorSearch(built.vectors, built.index)
        pipeline = Pipeline.of(built.store, search, built.contacts, built.model)
        assert isinstance(pipeline.ranker, LearnedRanker)
        now = built.contacts.as_of
        for row in range(0, built.store.n_rows, 11):
            uid = built.store.ids.ext_of(row)
            ranked = pipeline.suggest(uid, Surface.NEW_CONTACTS, now)
            sent, _, _ = built.store.interaction_partners(row, now)
            rows = built.store.ids.rows(ranked.user_ids)
            assert not np.isin(rows, sent).any() and row not in rows.tolist()
            assert np.all(np.diff(ranked.scores) <= 0)
            assert ranked.user_ids.tolist() == pipeline.suggest(uid, Surface.NEW_CONTACTS, now).user_ids.tolist()

    def test_share_sheet_puts_contacts_first(self, built: Built) -> None:
        search = VectorSearch(built.vectors, built.index)
        pipeline = Pipeline.of(built.store, search, built.contacts, built.model)
        row = int(np.argmax(built.contacts.degree))
        ranked = pipeline.suggest(built.store.ids.ext_of(row), Surface.SHARE_SHEET, built.contacts.as_of)
        known = set(built.contacts.neighbours(row).tolist())
        rows = built.store.ids.rows(ranked.user_ids).tolist()
        n_known = sum(r in known for r in rows)
        assert n_known > 0 and all(r in known for r in rows[:n_known])

    def test_share_sheet_puts_the_newest_contact_first(self, built: Built) -> None:
        """Someone messaged an hour ago comes before someone messaged fifty
        times a month ago (a frequency-first order puts them the other way
        round)."""
        now = 100 * DAY
        old_times = now - 30 * DAY + np.arange(50.0)
        src = np.array([1] * 50 + [1, 4], np.int64)
        dst = np.array([2] * 50 + [3, 1], np.int64)
        times = np.concatenate([old_times, [now - 3600.0, now - 60 * DAY]])
        n = src.shape[0]
        table = edge_table(src, dst, times, np.full(n, int(EventKind.INTERACTION)),
                           np.full(n, int(InteractionType.MESSAGE)))
        small = build(table, now, train=False)
        assert built.model is not None
        ranker = LearnedRanker(built.model, small.contacts, small.vectors)
        pipeline = Pipeline(small.store, VectorSearch(small.vectors, small.index), ranker, contacts=small.contacts)
        ranked = pipeline.suggest(1, Surface.SHARE_SHEET, now).user_ids.tolist()
        assert ranked[:3] == [3, 2, 4]

    def test_linear_without_model(self, built: Built) -> None:
        search = VectorSearch(built.vectors, built.index)
        assert isinstance(Pipeline.of(built.store, search, built.contacts, None).ranker, LinearRanker)
        assert isinstance(Pipeline.of(built.store, search, None, built.model).ranker, LinearRanker)
