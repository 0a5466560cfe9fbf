"""The evaluation harness: metrics against hand-computed values, the truth
of a toy timeline, the bootstrap, and one small end-to-end cut."""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from graph.model import EventKind, InteractionType
from graph.ranking import RankerTrainingConfig
from graph.rebuild import build
from service.cli.eval.baselines import BaselineContext, pagerank_from, personalised_pagerank
from service.cli.eval.data import DATASETS, Dataset, edge_table, load
from service.cli.eval.harness import (
    NODE2VEC,
    OURS,
    POOL_ALL,
    QUIET_MAX_EVENTS,
    EvalConfig,
    cut_document,
    evaluate_cut,
    format_cut,
    new_contacts,
)
from service.cli.eval.metrics import ndcg_at, paired_bootstrap, recall_at, reciprocal_rank, user_metrics
from tests.support.temporal import temporal_messages


class TestMetrics:
    ranked = np.array([5, 3, 9, 1])
    truth = np.array([3, 1, 7])

    def test_recall(self) -> None:
        assert recall_at(self.ranked, self.truth, 2) == pytest.approx(1 / 3)
        assert recall_at(self.ranked, self.truth, 10) == pytest.approx(2 / 3)
        assert recall_at(self.ranked, np.array([], np.int64), 10) == 0.0

    def test_reciprocal_rank(self) -> None:
        assert reciprocal_rank(self.ranked, self.truth) == 0.5
        assert reciprocal_rank(self.ranked, np.array([42])) == 0.0

    def test_ndcg(self) -> None:
        """Hits at ranks 2 and 4 of 3 relevant: (1/log2 3 + 1/log2 5) /
        (1 + 1/log2 3 + 1/log2 4)."""
        expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
        assert ndcg_at(self.ranked, self.truth, 20) == pytest.approx(expected)
        assert ndcg_at(np.array([3, 1, 7]), self.truth, 20) == pytest.approx(1.0)

    def test_user_metrics_order(self) -> None:
        m = user_metrics(self.ranked, self.truth)
        assert m.tolist() == pytest.approx([2 / 3, 2 / 3, 0.5, ndcg_at(self.ranked, self.truth, 20)])


class TestBootstrap:
    def test_identical_methods_have_zero_interval(self) -> None:
        x = np.random.default_rng(1).random(200)
        ci = paired_bootstrap(x, x, 200, seed=3)
        assert (ci.mean, ci.low, ci.high) == (0.0, 0.0, 0.0)

    def test_constant_difference(self) -> None:
        """Pairing: a method better by exactly 0.1 for every user has the
        interval [0.1, 0.1], however noisy the users are."""
        x = np.random.default_rng(2).random(300)
        ci = paired_bootstrap(x + 0.1, x, 200, seed=3)
        assert ci.low == pytest.approx(0.1) and ci.high == pytest.approx(0.1)

    def test_deterministic_and_covers_mean(self) -> None:
        rng = np.random.default_rng(4)
        a, b = rng.random(500), rng.random(500)
        assert paired_bootstrap(a, b, 300, seed=9) == paired_bootstrap(a, b, 300, seed=9)
        ci = paired_bootstrap(a, b, 300, seed=9)
        assert ci.low < ci.mean < ci.high


def _toy() -> Dataset:
    """Before the cut (t < 100): 1->2, 3->1, 4->2. After: 1->2 (not new),
    1->3 (new: 3 wrote first, 1 answers; 3 writes back later), 1->4 (new;
    4 replies), 4->1 (new for 4, and 1 wrote to 4 only before it: not a
    reply), 2->5 (5 joined after the cut), 3->1 (3 wrote to 1 before)."""
    rows = [(1, 2, 10), (3, 1, 20), (4, 2, 30),
            (1, 2, 110), (1, 3, 120), (1, 4, 130), (4, 1, 140), (2, 5, 150), (3, 1, 160)]
    src, dst, t = (np.array(c) for c in zip(*rows, strict=True))
    n = len(rows)
    return Dataset("toy", edge_table(src, dst, t.astype(float), np.full(n, int(EventKind.INTERACTION)),
                                     np.full(n, int(InteractionType.MESSAGE))))


class TestTruth:
    def test_toy_timeline(self) -> None:
        ds = _toy()
        store = build(ds.table, 100.0, train=False).store
        truth = new_contacts(ds.table, store, 100.0)
        n = store.n_rows
        pairs = {(store.ids.ext_of(int(k // n)), store.ids.ext_of(int(k % n))): bool(r)
                 for k, r in zip(truth.keys.tolist(), truth.replied.tolist(), strict=True)}
        assert pairs == {(1, 3): True, (1, 4): True, (4, 1): False}
        assert truth.dropped == 1

    def test_store_knows_only_users_before_the_cut(self) -> None:
        """A user's profile comes with their first event: 5 is unknown."""
        store = build(_toy().table, 100.0, train=False).store
        assert store.row(5) == -1 and store.row(4) >= 0


def _gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write(text)


def _edges(ds: Dataset) -> list[tuple[int, int, float, int, int]]:
    """(actor, target, time, kind, detail) of the non-profile events, in order."""
    t = ds.table
    keep = t.kind != EventKind.PROFILE
    return list(zip(t.actor[keep].tolist(), t.target[keep].tolist(), t.time[keep].tolist(),
                    t.kind[keep].tolist(), t.detail[keep].tolist(), strict=True))


class TestLoaders:
    """The new data sets' loaders on tiny gzipped files in their layout."""

    def test_mathoverflow_lines_are_messages_without_self_loops(self, tmp_path: Path) -> None:
        _gz(tmp_path / DATASETS["sx-mathoverflow"], "1 2 300\n3 3 100\n2 1 200\n4 1 250\n")
        ds = load("sx-mathoverflow", tmp_path)
        assert ds.name == "sx-mathoverflow"
        msg, inter = int(InteractionType.MESSAGE), int(EventKind.INTERACTION)
        assert _edges(ds) == [(2, 1, 200.0, inter, msg), (4, 1, 250.0, inter, msg), (1, 2, 300.0, inter, msg)]
        # Each user's profile at their first event; 3 (only a self-loop) is not a user.
        assert sorted(p.user_id for p in ds.table.profiles.values()) == [1, 2, 4]

    def test_higgs_types_map_to_interaction_types(self, tmp_path: Path) -> None:
        _gz(tmp_path / DATASETS["higgs-twitter"], "10 20 5 RT\n20 30 6 MT\n30 10 7 RE\n\n40 10 8 RT\n")
        ds = load("higgs-twitter", tmp_path)
        inter = int(EventKind.INTERACTION)
        assert _edges(ds) == [(10, 20, 5.0, inter, int(InteractionType.SHARE)),
                              (20, 30, 6.0, inter, int(InteractionType.MENTION)),
                              (30, 10, 7.0, inter, int(InteractionType.MESSAGE)),
                              (40, 10, 8.0, inter, int(InteractionType.SHARE))]
        assert len(ds.table.profiles) == 4

    @pytest.mark.parametrize("line", ["1 2 3 LIKE", "1 2 3", "1 2 3 RT extra"])
    def test_higgs_rejects_unknown_lines_by_number(self, tmp_path: Path, line: str) -> None:
        _gz(tmp_path / DATASETS["higgs-twitter"], f"1 2 3 RT\n{line}\n")
        with pytest.raises(ValueError, match=":2: expected USER_A USER_B UNIXTS"):
            load("higgs-twitter", tmp_path)

    def test_missing_file_names_the_data_set(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="sx-mathoverflow"):
            load("sx-mathoverflow", tmp_path)

    def test_command_line_offers_every_data_set(self) -> None:
        from service.cli.evaluate import DATASET_NAMES

        assert list(DATASETS) == DATASET_NAMES


class TestPageRank:
    def test_matches_networkx(self) -> None:
        """The precomputed power iteration gives networkx's personalised
        PageRank (an isolated row included) and the same top list."""
        import networkx as nx

        ds = temporal_messages(n_users=40, n_events=400)
        built = build(ds.table, float(np.quantile(ds.edge_times, 0.8)), train=False)
        contacts = built.contacts
        assert contacts is not None
        ctx = BaselineContext.of(built.store, contacts, None)  # type: ignore[arg-type]
        graph: nx.Graph[int] = nx.Graph()
        graph.add_nodes_from(range(contacts.n_rows))
        rows = np.repeat(np.arange(contacts.n_rows), np.diff(contacts.indptr))
        graph.add_edges_from(zip(rows.tolist(), contacts.indices.tolist(), strict=True))
        for row in (0, 7, 19):
            ranks = nx.pagerank(graph, alpha=0.85, personalization={row: 1.0}, tol=1e-8)
            expected = np.array([ranks[i] for i in range(contacts.n_rows)])
            np.testing.assert_allclose(pagerank_from(ctx, row), expected, rtol=1e-9, atol=1e-12)
        assert personalised_pagerank(ctx, 7, 10).shape[0] > 0


class TestEndToEnd:
    def test_small_cut(self) -> None:
        """One cut of a small network: every method scored for the same
        users, metrics in [0, 1], a printable report with a target line."""
        config = EvalConfig(cuts=(0.8,), n_boot=50,
                            ranker=RankerTrainingConfig(n_estimators=20, label_fractions=(0.3,)))
        result = evaluate_cut(temporal_messages(n_users=80, n_events=1500), 0.8, config)
        assert result.users.shape[0] > 10
        for values in result.metrics.values():
            assert values.shape == (result.users.shape[0], 4)
            assert np.all((values >= 0) & (values <= 1))
        assert result.metrics[OURS][:, 1].mean() > 0
        text = format_cut(result, config)
        assert "target:" in text and "share sheet MRR" in text and "ppr" in text
        # `eval --json`: the same numbers as one JSON-serialisable document.
        document = json.loads(json.dumps(cut_document(result, config)))
        assert document["users"] == result.users.shape[0] and set(document["methods"]) == set(result.metrics)
        ours = document["methods"][OURS]["recall@20"]
        assert ours["mean"] == pytest.approx(float(result.metrics[OURS][:, 1].mean())) and "delta" not in ours
        assert f"{ours['mean']:.4f}" in text
        assert isinstance(document["target"]["met"], bool) and ("MET" in text)
        assert f"quiet users (<= {QUIET_MAX_EVENTS} interactions" in text and "pool recall" in text

    def test_quiet_users_and_pool_recall(self) -> None:
        """Quiet users are those with at most QUIET_MAX_EVENTS interactions
        before the cut; pool recall is per source in [0, 1], the union at
        least each source and at least the pipeline's Recall@20 (the ranker
        can only order what the pool holds)."""
        config = EvalConfig(cuts=(0.8,), n_boot=20, max_users=30,
                            ranker=RankerTrainingConfig(n_estimators=10, label_fractions=(0.3,)))
        ds = temporal_messages(n_users=80, n_events=1500)
        result = evaluate_cut(ds, 0.8, config)
        assert result.users.shape[0] == 30 and result.users_with_truth > 30
        store = build(ds.table, result.cut_time, train=False).store
        t = ds.table
        before = (t.kind == EventKind.INTERACTION) & (t.time < result.cut_time)
        for row, quiet in zip(result.users.tolist(), result.quiet.tolist(), strict=True):
            uid = store.ids.ext_of(row)
            n_events = int(((t.actor[before] == uid) | (t.target[before] == uid)).sum())
            assert quiet == (n_events <= QUIET_MAX_EVENTS)
        total = result.pool.pop(POOL_ALL)
        assert result.pool and "embedding" in result.pool
        for values in result.pool.values():
            assert values.shape == total.shape and np.all((values >= 0) & (values <= total + 1e-12))
        assert np.all(total >= result.metrics[OURS][:, 1] - 1e-12)
        assert "seeded sample of the" in format_cut(result, config)


_FAKE_PECANPY = '''\
import argparse, random
p = argparse.ArgumentParser()
for flag in ("--input", "--output", "--mode", "--dimensions", "--walk-length", "--num-walks", "--window-size",
             "--epochs", "--p", "--q", "--workers", "--random_state"):
    p.add_argument(flag)
p.add_argument("--weighted", action="store_true")
a = p.parse_args()
nodes = sorted({int(x) for line in open(a.input) for x in line.split("\\t")[:2]})
rng = random.Random(1)
with open(a.output, "w") as f:
    f.write(f"{len(nodes)} {a.dimensions}\\n")
    for n in nodes:
        f.write(str(n) + " " + " ".join(f"{rng.gauss(0, 1):.5f}" for _ in range(int(a.dimensions))) + "\\n")
'''


class TestNode2Vec:
    """The pecanpy round trip without pecanpy: the edge list we write, the
    word2vec text we read back, and the harness's node2vec method run
    against a stand-in script."""

    def test_reads_rows_and_normalises(self, tmp_path: Path) -> None:
        """Ids are rows; vectors come back unit length; rows the file lacks
        (no edge, so pecanpy never saw them) are zero."""
        from service.cli.eval.node2vec import read_embeddings

        path = tmp_path / "tiny.emb"
        path.write_text("3 2\n4 3 4\n0 1.5 0\n2 0 -2\n")
        v = read_embeddings(path, 6)
        assert v.dtype == np.float32 and v.shape == (6, 2)
        np.testing.assert_allclose(v[[4, 0, 2]], np.array([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]]), atol=1e-6)
        assert not v[[1, 3, 5]].any()

    @pytest.mark.parametrize("text, where", [
        ("2 2\n0 1 0\n", "header says 2"),
        ("1 2\n7 1 0\n", ":2: id 7"),
        ("2 2\n0 1 0\n0 0 1\n", ":3: id 0 appears twice"),
        ("1 3\n0 1 0\n", ":2: 2 values"),
        ("one 2\n", ":1:"),
        ("1 2\nx 1 0\n", ":2:"),
    ])
    def test_rejects_malformed_files(self, tmp_path: Path, text: str, where: str) -> None:
        from service.cli.eval.node2vec import Node2VecError, read_embeddings

        path = tmp_path / "bad.emb"
        path.write_text(text)
        with pytest.raises(Node2VecError, match=where):
            read_embeddings(path, 5)

    def test_edge_list_has_each_undirected_edge_once(self, tmp_path: Path) -> None:
        import scipy.sparse as sp

        from service.cli.eval.node2vec import write_edgelist

        dense = np.zeros((4, 4), np.float32)
        dense[0, 2] = dense[2, 0] = 1.5
        dense[1, 3] = dense[3, 1] = 0.25
        path = tmp_path / "g.edg"
        assert write_edgelist(sp.csr_matrix(dense), path) == 2
        assert path.read_text().splitlines() == ["0\t2\t1.5", "1\t3\t0.25"]

    def test_missing_venv_is_skipped_with_a_note(self, tmp_path: Path) -> None:
        from service.cli.eval.harness import run

        lines: list[str] = []
        assert run(tmp_path, [], EvalConfig(node2vec_venv=tmp_path / "nowhere"), out=lines.append) == []
        assert any("no pecanpy" in line and "skipped" in line for line in lines)

    def test_harness_ranks_by_node2vec_vectors(self, tmp_path: Path) -> None:
        """With a pecanpy in the venv, the cut has a node2vec method scored
        for the same users, and the report compares it with ours."""
        script = tmp_path / "venv" / "bin" / "pecanpy"
        script.parent.mkdir(parents=True)
        script.write_text(f"#!{sys.executable}\n{_FAKE_PECANPY}")
        script.chmod(0o755)
        config = EvalConfig(cuts=(0.8,), n_boot=20, node2vec_venv=tmp_path / "venv",
                            ranker=RankerTrainingConfig(n_estimators=10, label_fractions=(0.3,)))
        result = evaluate_cut(temporal_messages(n_users=60, n_events=1000), 0.8, config)
        assert NODE2VEC in result.metrics and result.metrics[NODE2VEC].shape == (result.users.shape[0], 4)
        assert result.metrics[NODE2VEC][:, 1].sum() > 0  # random vectors still hit someone
        assert "node2vec.train" in result.timings
        assert f"embedding vs {NODE2VEC}" in format_cut(result, config)
