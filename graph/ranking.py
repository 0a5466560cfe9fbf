"""The learned ranker: a model over ``graph.features`` trained on an inner
split of the training history, and a dependency-free scorer for it.

Training (``train_ranker``) sees only events strictly before ``as_of``: it
folds the events before an inner cut into a store, embeds it, builds the
contact graph, generates candidates exactly as serving does
(``graph.retrieval.new_contact_pool``) and labels them with the new contacts
made between the inner cut and ``as_of``. Nothing at or after ``as_of`` is
read, so a later test window cannot leak into the model.

The fitted model is plain numbers (``RankingModel.to_json``): gradient-
boosted trees or a logistic regression, scored with numpy, so a snapshot
does not pickle library objects and serving needs no scikit-learn. The JSON
carries a sha256 of its own content, checked on load."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from . import arrays
from .ann import VectorSearch, build_index
from .clock import ManualClock
from .config import GraphConfig
from .contacts import ContactConfig, ContactGraph
from .embedding import EmbeddingConfig, embed
from .erasure import ErasureLedger
from .errors import GraphError
from .features import FEATURES, pair_features
from .fold import fold
from .model import EventKind
from .retrieval import RetrievalConfig, new_contact_pool
from .table import EventTable

log = logging.getLogger(__name__)

MODEL_FORMAT = 1


class ModelError(GraphError):
    """A ranking model that is corrupt or of another format."""


@dataclass(frozen=True)
class RankerTrainingConfig:
    kind: str = "gbt"  # "gbt" or "logistic"
    # The last share of the training interactions gives the labels; the
    # events before it give the features.
    # Several inner splits give more labelled examples: each folds the events
    # before its inner cut and labels with everything after it.
    label_fractions: tuple[float, ...] = (0.25, 0.5)
    n_estimators: int = 150
    max_leaf_nodes: int = 15
    learning_rate: float = 0.05
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    # Bounds on the rebuild's cost on large graphs: users sampled per inner
    # split, and examples kept in all (sampled uniformly).
    max_users: int = 2_000
    max_examples: int = 150_000
    # Inner splits are taken in order until this many examples are in
    # hand: on a large graph the first split alone has plenty, and each
    # split costs a fold, an embedding and a contact graph of the history.
    enough_examples: int = 100_000
    negatives_per_user: int = 50
    # The metrics average over users: weighting a user's examples by
    # 1/sqrt(their count) keeps the users with many new contacts from
    # drowning out the rest (1/count over-corrects on small data).
    user_weight_power: float = 0.5
    seed: int = 7
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    def __post_init__(self) -> None:
        if self.kind not in ("gbt", "logistic"):
            raise ValueError(f"unknown ranker kind {self.kind!r}")
        if not self.label_fractions or not all(0.0 < f < 1.0 for f in self.label_fractions):
            raise ValueError("label_fractions must be in (0, 1)")


class RankingModel:
    """Scores for feature rows (higher is better). ``params`` is the JSON-
    ready description; see ``to_json``."""

    def __init__(self, params: dict[str, Any]) -> None:
        if params.get("format") != MODEL_FORMAT:
            raise ModelError(f"ranking model format {params.get('format')}, this build reads {MODEL_FORMAT}")
        if list(params.get("features", [])) != list(FEATURES):
            raise ModelError("ranking model was trained on other features")
        self.params = params
        self.kind = str(params["kind"])
        if self.kind == "gbt":
            trees = params["trees"]
            width = max(len(t["feature"]) for t in trees)
            self._feature = np.full((len(trees), width), -1, np.int64)
            self._threshold = np.zeros((len(trees), width))
            self._left = np.zeros((len(trees), width), np.int64)
            self._right = np.zeros((len(trees), width), np.int64)
            self._value = np.zeros((len(trees), width))
            for i, t in enumerate(trees):
                k = len(t["feature"])
                self._feature[i, :k] = t["feature"]
                self._threshold[i, :k] = t["threshold"]
                self._left[i, :k] = t["left"]
                self._right[i, :k] = t["right"]
                self._value[i, :k] = t["value"]
            self._depth = int(params["max_depth"])
        elif self.kind == "logistic":
            self._mean = np.array(params["mean"])
            self._scale = np.array(params["scale"])
            self._coef = np.array(params["coef"])
        else:
            raise ModelError(f"unknown ranking model kind {self.kind!r}")

    def score(self, x: np.ndarray) -> npt.NDArray[np.float64]:
        """x: (n, len(FEATURES)) float64 -> raw scores (n,) float64 (log-odds)."""
        x = np.asarray(x, np.float64)
        if x.shape[0] == 0:
            return np.zeros(0)
        if self.kind == "logistic":
            logits: npt.NDArray[np.float64] = (((x - self._mean) / self._scale) @ self._coef
                                               + float(self.params["intercept"]))
            return logits
        x32 = x
        n, n_trees = x.shape[0], self._feature.shape[0]
        node = np.zeros((n, n_trees), np.int64)
        tree = np.arange(n_trees)[None, :]
        for _ in range(self._depth):
            feat = self._feature[tree, node]
            leaf = feat < 0
            value = np.take_along_axis(x32, np.maximum(feat, 0), axis=1)
            nxt = np.where(value <= self._threshold[tree, node], self._left[tree, node], self._right[tree, node])
            node = np.where(leaf, node, nxt)
        leaves = self._value[tree, node].sum(axis=1)
        boosted: npt.NDArray[np.float64] = float(self.params["base"]) + float(self.params["learning_rate"]) * leaves
        return boosted

    def to_json(self) -> dict[str, Any]:
        body = {k: v for k, v in self.params.items() if k != "sha256"}
        return {**body, "sha256": _digest(body)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> RankingModel:
        body = {k: v for k, v in data.items() if k != "sha256"}
        if data.get("sha256") != _digest(body):
            raise ModelError("ranking model does not match its checksum (corrupt)")
        return RankingModel(body)


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class TrainingData:
    x: np.ndarray  # (n, len(FEATURES)) float64
    y: np.ndarray  # (n,) int8, 1 = became a new contact in the label window
    groups: np.ndarray  # (n,) int64, which (split, user) each example belongs to
    users: int  # (user, split) pairs that gave examples
    inner_cuts: tuple[float, ...]


def _interaction_times(table: EventTable) -> npt.NDArray[np.float64]:
    times: npt.NDArray[np.float64] = table.time[table.kind == EventKind.INTERACTION]
    return times


def _select(table: EventTable, mask: np.ndarray) -> EventTable:
    idx = np.flatnonzero(mask)
    out = EventTable(table.time[idx], table.kind[idx], table.actor[idx], table.target[idx], table.detail[idx],
                     table.event_id[idx])
    # Profile rows are few next to the events: look them up in the kept
    # indices rather than mapping every kept index.
    old_rows = np.fromiter(table.profiles, np.int64, len(table.profiles))
    pos = np.searchsorted(idx, old_rows)
    kept = (pos < idx.shape[0]) & (idx[np.minimum(pos, max(idx.shape[0] - 1, 0))] == old_rows) \
        if idx.shape[0] else np.zeros(old_rows.shape[0], bool)
    out.profiles = {int(new): table.profiles[int(old)] for old, new in zip(old_rows[kept], pos[kept], strict=True)}
    return out


def before(table: EventTable, when: float) -> EventTable:
    """The events strictly before ``when`` (profiles included); the table
    itself when that is all of it (no copy of a large history)."""
    mask = table.time < when
    return table if bool(mask.all()) else _select(table, mask)


def _split_examples(table: EventTable, inner_cut: float, graph_config: GraphConfig,
                    config: RankerTrainingConfig, embedding: EmbeddingConfig, contact: ContactConfig,
                    rng: np.random.Generator, ledger: ErasureLedger | None = None,
                    ) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Examples of one inner split: features as of ``inner_cut`` from the
    events before it, labels from the interactions in the rest of ``table``."""
    history = before(table, inner_cut)
    store = fold(history, graph_config, ManualClock(inner_cut), ledger=ledger)
    vectors = embed(store, embedding, now=inner_cut)
    # Exact search, prefetched for every sampled user at once below: one
    # matrix product is cheaper than building an approximate index for a
    # few thousand queries.
    search = VectorSearch(vectors, build_index(vectors, exact_below=vectors.shape[0] + 1))
    contacts = ContactGraph.build(history, store, inner_cut, contact)
    del history
    # Labels: whom each user messaged after inner_cut for the first time.
    sel = (table.kind == EventKind.INTERACTION) & (table.time >= inner_cut)
    a = store.ids.rows(table.actor[sel]).astype(np.int64)
    b = store.ids.rows(table.target[sel]).astype(np.int64)
    ok = (a >= 0) & (b >= 0) & (a != b)
    n = max(store.n_rows, 1)
    new_pairs = arrays.unique(a[ok] * n + b[ok])
    out_base, _ = store.interactions.base()
    src, dst = out_base.edges()
    new_pairs = new_pairs[~arrays.isin(new_pairs, src.astype(np.int64) * n + dst)]
    users = arrays.unique(new_pairs // n)
    if users.shape[0] > config.max_users:
        users = np.sort(rng.choice(users, config.max_users, replace=False))
    search.prefetch(users, config.retrieval.embedding_k)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for u in users.tolist():
        pool = new_contact_pool(store, contacts, search, u, inner_cut, config.retrieval)
        if pool.shape[0] == 0:
            continue
        lo, hi = np.searchsorted(new_pairs, [u * n, (u + 1) * n])
        y = np.isin(pool, new_pairs[lo:hi] % n)
        neg = np.flatnonzero(~y)
        if neg.shape[0] > config.negatives_per_user:
            neg = np.sort(rng.choice(neg, config.negatives_per_user, replace=False))
        keep = np.sort(np.concatenate([np.flatnonzero(y), neg]))
        xs.append(pair_features(contacts, vectors, u, pool[keep], inner_cut))
        ys.append(y[keep].astype(np.int8))
    return xs, ys, len(xs)


def training_data(table: EventTable, as_of: float, graph_config: GraphConfig, config: RankerTrainingConfig,
                  embedding: EmbeddingConfig, contact: ContactConfig,
                  ledger: ErasureLedger | None = None) -> TrainingData | None:
    """Candidates and labels from the inner splits of the events before
    ``as_of``; None when the history is too short to split."""
    table = before(table, as_of)
    times = _interaction_times(table)
    if times.shape[0] < 20:
        return None
    rng = np.random.default_rng(config.seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    users = 0
    cuts = tuple(float(np.quantile(times, 1.0 - f)) for f in config.label_fractions)
    for inner_cut in cuts:
        split_x, split_y, u = _split_examples(table, inner_cut, graph_config, config, embedding, contact, rng, ledger)
        xs += split_x
        ys += split_y
        users += u
        if sum(part.shape[0] for part in ys) >= config.enough_examples:
            break
    if not xs:
        return None
    groups = np.repeat(np.arange(len(ys)), [y.shape[0] for y in ys])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if y.shape[0] > config.max_examples:
        keep = np.sort(rng.choice(y.shape[0], config.max_examples, replace=False))
        x, y, groups = x[keep], y[keep], groups[keep]
    return TrainingData(x, y, groups, users, cuts)


def user_weights(data: TrainingData, config: RankerTrainingConfig) -> npt.NDArray[np.float64]:
    """Per example: 1 / (its user's example count) ** user_weight_power,
    scaled to mean 1. Shape (n,) float64."""
    counts = np.bincount(data.groups)[data.groups].astype(np.float64)
    weight: npt.NDArray[np.float64] = counts ** -config.user_weight_power
    scaled: npt.NDArray[np.float64] = weight / weight.mean()
    return scaled


def fit(data: TrainingData, config: RankerTrainingConfig) -> RankingModel | None:
    """A model for the data; None when the labels are all one class."""
    y = data.y
    if y.min(initial=1) == y.max(initial=0):
        return None
    meta = {"samples": int(y.shape[0]), "positives": int(y.sum()), "users": data.users,
            "inner_cuts": list(data.inner_cuts)}
    if config.kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        mean = data.x.mean(axis=0)
        scale = data.x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        lr = LogisticRegression(C=1.0, max_iter=2000)
        lr.fit((data.x - mean) / scale, y, sample_weight=user_weights(data, config))
        return RankingModel({
            "format": MODEL_FORMAT, "kind": "logistic", "features": list(FEATURES),
            "mean": mean.tolist(), "scale": scale.tolist(), "coef": lr.coef_[0].tolist(),
            "intercept": float(lr.intercept_[0]), "training": meta,
        })
    from sklearn.ensemble import HistGradientBoostingClassifier

    gbt = HistGradientBoostingClassifier(
        max_iter=config.n_estimators, learning_rate=config.learning_rate, max_leaf_nodes=config.max_leaf_nodes,
        min_samples_leaf=config.min_samples_leaf, l2_regularization=config.l2_regularization,
        early_stopping=False, random_state=config.seed)
    gbt.fit(data.x, y, sample_weight=user_weights(data, config))
    # scikit-learn keeps the fitted trees in ``_predictors`` (one list per
    # iteration); a test checks our scorer against decision_function.
    trees = []
    depth = 0
    for (predictor,) in gbt._predictors:
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        depth = max(depth, int(nodes["depth"].max()))
        trees.append({
            "feature": np.where(leaf, -1, nodes["feature_idx"]).astype(int).tolist(),
            "threshold": nodes["num_threshold"].astype(float).tolist(),
            "left": nodes["left"].astype(int).tolist(),
            "right": nodes["right"].astype(int).tolist(),
            "value": nodes["value"].astype(float).tolist(),
        })
    model = RankingModel({
        "format": MODEL_FORMAT, "kind": "gbt", "features": list(FEATURES),
        "base": float(np.ravel(gbt._baseline_prediction)[0]), "learning_rate": 1.0,
        "max_depth": depth, "trees": trees, "training": meta,
    })
    check_export(model, gbt.decision_function, data.x)
    return model


def check_export(model: RankingModel, decision_function: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                 sample: int = 2000) -> None:
    """Refuse an export that does not score as the fitted model does: the
    export reads scikit-learn's private tree arrays, which a release may
    change (the dependency is capped below 2, and this catches a minor
    release that moves them). Compares on up to ``sample`` training rows
    (x: (n, len(FEATURES)) float64)."""
    rows = x[:: max(1, x.shape[0] // sample)]
    want = np.ravel(decision_function(rows)).astype(np.float64)
    got = model.score(rows)
    if not np.allclose(got, want, rtol=1e-6, atol=1e-6):
        worst = float(np.max(np.abs(got - want)))
        raise ModelError(f"the exported ranker scores differ from scikit-learn's by up to {worst:.3g}: "
                         "the fitted trees' layout changed; refusing to ship the model")


def train_ranker(table: EventTable, as_of: float, graph_config: GraphConfig, config: RankerTrainingConfig,
                 embedding: EmbeddingConfig, contact: ContactConfig, *,
                 ledger: ErasureLedger | None = None) -> RankingModel | None:
    """``ledger``: erased users, whose events are left out of training."""
    data = training_data(table, as_of, graph_config, config, embedding, contact, ledger)
    if data is None:
        log.info("ranker not trained: history too short for an inner split")
        return None
    model = fit(data, config)
    log.info("ranker trained on %d samples (%d positive) from %d users", data.y.shape[0], int(data.y.sum()),
             data.users)
    return model
