"""Temporal evaluation: cut a data set at time quantiles, build the snapshot
"as of" each cut from the events before it, ask the service's Pipeline for
every user's NEW_CONTACTS (safety on) and score it, with the baselines, on
the contacts each user made after the cut.

Size (over 400 lines): one cut's evaluation and its report (text and the
``--json`` summary) share ``CutResult`` and the bootstrap; the HTML page is
``report.py``.

Truth for user u: the people u messaged after the cut and never before it
(someone who messaged u first counts once u answers). Users and targets are
those the snapshot knows (present before the cut); targets who joined later
can be suggested by no method and are left out (their count is printed).

Large sets evaluate a seeded sample of users (``EvalConfig.max_users``, or
``SAMPLED_USERS`` per data set when it is None); the report says how many
of how many. Beside the table: the metrics for quiet users (at most
``QUIET_MAX_EVENTS`` interactions before the cut), and pool recall, the
share of a user's truth that each candidate source, and all of them
together, put in front of the ranker."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tabulate import tabulate

from graph.ann import VectorSearch, build_index
from graph.bounds import Bounds
from graph.contacts import ContactGraph
from graph.model import EventKind, Surface
from graph.ranking import RankerTrainingConfig
from graph.rebuild import build
from graph.retrieval import RetrievalConfig
from graph.store import GraphStore
from graph.table import EventTable
from service.cli.eval import node2vec
from service.cli.eval.baselines import BASELINES, BaselineContext, embedding_only
from service.cli.eval.data import Dataset, load
from service.cli.eval.metrics import (
    METRICS,
    paired_bootstrap,
    recall_at,
    recall_curve,
    reciprocal_rank,
    user_metrics,
)
from service.pipeline import Pipeline
from service.pipeline.candidates import SourceResult
from service.pipeline.ranker import LinearRanker

log = logging.getLogger(__name__)

OURS = "pipeline"
LINEAR = "pipeline-linear"
RECENT = "most-recent-contact"
NODE2VEC = "node2vec"
COLD_MAX_CONTACTS = 2
QUIET_MAX_EVENTS = 5
POOL_ALL = "all sources"
# Evaluation users per cut when EvalConfig.max_users is None: the two large
# sets are sampled (seeded) so that `make eval` stays within its time budget;
# personalised PageRank and the pipeline cost ~0.1-1 s per user there.
SAMPLED_USERS: dict[str, int] = {"sx-mathoverflow": 400, "higgs-twitter": 400}


@dataclass(frozen=True)
class EvalConfig:
    cuts: tuple[float, ...] = (0.7, 0.8, 0.9)
    depth: int = 100
    n_boot: int = 1000
    seed: int = 0
    max_users: int | None = None
    baselines: tuple[str, ...] = tuple(BASELINES)
    ranker: RankerTrainingConfig = field(default_factory=RankerTrainingConfig)
    # Also rank by node2vec (pecanpy) neighbours: the venv holding pecanpy,
    # None = off. A venv without it is skipped with a note (see run()).
    node2vec_venv: Path | None = None
    node2vec_config: node2vec.Node2VecConfig = field(default_factory=node2vec.Node2VecConfig)
    # The caps on work per request the served pipelines run under (the
    # ranker's training candidates use the training config's).
    bounds: Bounds = field(default_factory=Bounds)


@dataclass
class CutResult:
    dataset: str
    quantile: float
    cut_time: float
    users: np.ndarray  # rows evaluated
    metrics: dict[str, np.ndarray]  # method -> (n_users, len(METRICS))
    cold: np.ndarray  # bool per user: <= COLD_MAX_CONTACTS contacts before the cut
    replied: dict[str, np.ndarray]  # method -> Recall@20 over replied new contacts, per user who has any
    share: dict[str, np.ndarray]  # method -> reciprocal rank of the first recipient after the cut
    quiet: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # <= QUIET_MAX_EVENTS before the cut
    pool: dict[str, np.ndarray] = field(default_factory=dict)  # source -> share of each user's truth it found
    # method -> (n_users, depth): Recall@k for k = 1..depth, for the report's curves.
    recall_curves: dict[str, np.ndarray] = field(default_factory=dict)
    users_with_truth: int = 0  # users with a new contact, before sampling
    truth_pairs: int = 0
    dropped_pairs: int = 0  # new contacts with a target unknown at the cut
    model_info: dict[str, object] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _first_and_reply(a: np.ndarray, b: np.ndarray, t: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per directed pair key a*n+b of the test events: its first time, and
    whether the other side wrote back at or after it. Returns (keys sorted,
    replied bool)."""
    key = a * n + b
    uniq, inv = np.unique(key, return_inverse=True)
    first = np.full(uniq.shape[0], np.inf)
    np.minimum.at(first, inv, t)
    last = np.full(uniq.shape[0], -np.inf)
    np.maximum.at(last, inv, t)
    rev = (uniq % n) * n + uniq // n
    pos = np.minimum(np.searchsorted(uniq, rev), uniq.shape[0] - 1)
    has_rev = uniq[pos] == rev
    replied = has_rev & (last[pos] >= first)
    return uniq, replied


@dataclass(frozen=True)
class Truth:
    """New contacts after the cut, over the snapshot's rows (n = rows)."""

    keys: np.ndarray  # int64 u * n + v, sorted: u messaged v after the cut and never before
    replied: np.ndarray  # bool per key: v wrote back at or after u's first message
    dropped: int  # distinct (u, v) with v unknown at the cut (joined later)
    a: np.ndarray  # rows of every interaction after the cut (-1 unknown): sender
    b: np.ndarray  # recipient
    t: np.ndarray  # time


def new_contacts(table: EventTable, store: GraphStore, cut: float) -> Truth:
    """Truth for every user: whom they messaged at or after ``cut`` and
    never before it. Someone who messaged u first counts once u answers."""
    n = max(store.n_rows, 1)
    sel = (table.kind == EventKind.INTERACTION) & (table.time >= cut)
    a = store.ids.rows(table.actor[sel]).astype(np.int64)
    b = store.ids.rows(table.target[sel]).astype(np.int64)
    t = table.time[sel]
    out_base, _ = store.interactions.base()
    src, dst = out_base.edges()
    before = np.unique(src.astype(np.int64) * n + dst)
    late = (a >= 0) & (b < 0)
    dropped = np.unique(np.stack([a[late], table.target[sel][late]]), axis=1).shape[1]
    ok = (a >= 0) & (b >= 0) & (a != b)
    keys, replied = _first_and_reply(a[ok], b[ok], t[ok], n)
    new = ~np.isin(keys, before)
    return Truth(keys[new], replied[new], int(dropped), a, b, t)


def evaluate_cut(dataset: Dataset, quantile: float, config: EvalConfig,
                 progress: Callable[[str], None] | None = None) -> CutResult:
    timings: dict[str, float] = {}
    table = dataset.table
    cut = float(np.quantile(dataset.edge_times, quantile))
    started = time.perf_counter()
    built = build(table, cut, ranker=config.ranker)
    timings.update({f"build.{k}": v for k, v in built.timings.items()})
    store, contacts = built.store, built.contacts
    search = VectorSearch(built.vectors, built.index)
    retrieval = RetrievalConfig(bounds=config.bounds)
    contacts = contacts.with_bounds(config.bounds)
    pipeline = Pipeline.of(store, search, contacts, built.model, retrieval=retrieval)
    linear = Pipeline(store, search, LinearRanker(), contacts=contacts, retrieval=retrieval)
    ctx = BaselineContext.of(store, contacts, search)
    extra: dict[str, BaselineContext] = {}
    script = node2vec.executable(config.node2vec_venv) if config.node2vec_venv is not None else None
    if script is not None:
        # The same store as ours, as of the cut: only the vectors differ.
        try:
            with tempfile.TemporaryDirectory(prefix="node2vec-") as tmp:
                trained = node2vec.node2vec_vectors(store, cut, Path(tmp), script=script,
                                                    config=config.node2vec_config)
            timings["node2vec.train"] = trained.seconds
            extra[NODE2VEC] = dataclasses.replace(
                ctx, search=VectorSearch(trained.vectors, build_index(trained.vectors)))
        except node2vec.Node2VecError as err:
            if progress:
                progress(f"  {dataset.name} @{quantile:.0%}: node2vec skipped: {err}")
    n = max(store.n_rows, 1)

    found = new_contacts(table, store, cut)
    truth_keys, truth_replied = found.keys, found.replied
    a, b, t = found.a, found.b, found.t
    users = np.unique(truth_keys // n)
    users_with_truth = int(users.shape[0])
    cap = config.max_users if config.max_users is not None else SAMPLED_USERS.get(dataset.name)
    if cap is not None and users.shape[0] > cap:
        users = np.sort(np.random.default_rng(config.seed).choice(users, cap, replace=False))
    events_before = _events_before(table, store, cut)
    flow = pipeline.flow(Surface.NEW_CONTACTS)
    pool: dict[str, np.ndarray] = {src.name: np.zeros(users.shape[0]) for src in flow.sources}
    pool[POOL_ALL] = np.zeros(users.shape[0])

    methods = [OURS, LINEAR, *config.baselines, *extra]
    metrics = {m: np.zeros((users.shape[0], len(METRICS))) for m in methods}
    curves = {m: np.zeros((users.shape[0], config.depth)) for m in methods}
    replied_scores: dict[str, list[float]] = {m: [] for m in methods}
    method_time = dict.fromkeys(methods, 0.0)
    for i, u in enumerate(users.tolist()):
        lo, hi = np.searchsorted(truth_keys, [u * n, (u + 1) * n])
        truth = truth_keys[lo:hi] % n
        truth_rep = truth[truth_replied[lo:hi]]
        uid = store.ids.ext_of(u)
        _pool_recall(flow.gather(u, cut), truth, pool, i)
        for m in methods:
            t0 = time.perf_counter()
            if m in (OURS, LINEAR):
                ranked_ids = (pipeline if m == OURS else linear).suggest(uid, Surface.NEW_CONTACTS, cut).user_ids
                ranked = store.ids.rows(ranked_ids[: config.depth]).astype(np.int64)
            elif m in extra:
                ranked = embedding_only(extra[m], u, config.depth)
            else:
                ranked = BASELINES[m](ctx, u, config.depth)
            method_time[m] += time.perf_counter() - t0
            metrics[m][i] = user_metrics(ranked, truth)
            curves[m][i] = recall_curve(ranked, truth, config.depth)
            if truth_rep.shape[0]:
                replied_scores[m].append(recall_at(ranked, truth_rep, 20))
        if progress and (i + 1) % 500 == 0:
            progress(f"  {dataset.name} @{quantile:.0%}: {i + 1}/{users.shape[0]} users")
    timings.update({f"rank.{m}": v for m, v in method_time.items()})

    share = _share_sheet(store, contacts, pipeline, a, b, t, cut, cap, config.seed)
    timings["total"] = time.perf_counter() - started
    model_info: dict[str, object] = {}
    if built.model is not None:
        model_info = {"kind": built.model.kind, **built.model.params.get("training", {})}
    return CutResult(
        dataset.name, quantile, cut, users, metrics, contacts.degree[users] <= COLD_MAX_CONTACTS,
        {m: np.array(v) for m, v in replied_scores.items()}, share,
        quiet=events_before[users] <= QUIET_MAX_EVENTS, pool=pool, recall_curves=curves,
        users_with_truth=users_with_truth, truth_pairs=int(truth_keys.shape[0]), dropped_pairs=found.dropped,
        model_info=model_info, timings=timings)


def _events_before(table: EventTable, store: GraphStore, cut: float) -> np.ndarray:
    """Per row: the interactions before ``cut`` the user sent or received."""
    sel = (table.kind == EventKind.INTERACTION) & (table.time < cut)
    ends = np.concatenate([store.ids.rows(table.actor[sel]), store.ids.rows(table.target[sel])]).astype(np.int64)
    counts: np.ndarray = np.bincount(ends[ends >= 0], minlength=store.n_rows)
    return counts


def _pool_recall(results: list[SourceResult], truth: np.ndarray, pool: dict[str, np.ndarray], i: int) -> None:
    """Row ``i`` of ``pool``: the share of ``truth`` each source found, and
    all of them together."""
    found = np.zeros(truth.shape[0], bool)
    for r in results:
        hit = np.isin(truth, r.rows)
        pool[r.name][i] = float(hit.mean()) if truth.shape[0] else 0.0
        found |= hit
    pool[POOL_ALL][i] = float(found.mean()) if truth.shape[0] else 0.0


def _share_sheet(store: GraphStore, contacts: ContactGraph, pipeline: Pipeline, a: np.ndarray, b: np.ndarray,
                 t: np.ndarray, cut: float, cap: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Reciprocal rank of each sender's first recipient after the cut on the
    share sheet, ours against "most recent contact first"; a seeded sample
    of ``cap`` senders when there are more."""
    ok = (a >= 0) & (b >= 0) & (a != b)
    a, b, t = a[ok], b[ok], t[ok]
    order = np.lexsort((t, a))
    a, b = a[order], b[order]
    first = np.ones(a.shape[0], bool)
    first[1:] = a[1:] != a[:-1]
    senders, targets = a[first], b[first]
    known = contacts.degree[senders] > 0
    senders, targets = senders[known], targets[known]
    if cap is not None and senders.shape[0] > cap:
        pick = np.sort(np.random.default_rng(seed).choice(senders.shape[0], cap, replace=False))
        senders, targets = senders[pick], targets[pick]
    ours: list[float] = []
    recent: list[float] = []
    for u, target in zip(senders.tolist(), targets.tolist(), strict=True):
        truth = np.array([target])
        ranked_ids = pipeline.suggest(store.ids.ext_of(u), Surface.SHARE_SHEET, cut).user_ids[:100]
        ours.append(reciprocal_rank(store.ids.rows(ranked_ids).astype(np.int64), truth))
        start, end = contacts.span(u)
        nbrs = contacts.indices[start:end]
        by_recency = nbrs[np.lexsort((nbrs, -contacts.last[start:end]))]
        recent.append(reciprocal_rank(by_recency.astype(np.int64), truth))
    return {OURS: np.array(ours), RECENT: np.array(recent)}


# -- report -------------------------------------------------------------------

def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _methods(r: CutResult, config: EvalConfig) -> dict[str, dict[str, dict[str, float]]]:
    """method -> metric -> {"mean"} and, for all but ours, the paired
    bootstrap of (method - ours): {"delta", "low", "high"}."""
    ours = r.metrics[OURS]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, values in r.metrics.items():
        out[name] = {}
        for j, metric in enumerate(METRICS):
            cell = {"mean": float(values[:, j].mean()) if values.shape[0] else 0.0}
            if name != OURS:
                ci = paired_bootstrap(values[:, j], ours[:, j], config.n_boot, config.seed)
                cell.update(delta=ci.mean, low=ci.low, high=ci.high)
            out[name][metric] = cell
    return out


def _method_table(methods: dict[str, dict[str, dict[str, float]]]) -> str:
    headers = ["method"]
    for metric in METRICS:
        headers += [metric, "Δ vs ours [95% CI]"]
    rows = []
    for name, cells in methods.items():
        row = [name]
        for metric in METRICS:
            c = cells[metric]
            row += [_fmt(c["mean"]), f"{c['delta']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]" if "delta" in c else ""]
        rows.append(row)
    # Cells are formatted here; tabulate lays them out.
    return tabulate(rows, headers, disable_numparse=True, colalign=("left", *("right",) * (len(headers) - 1)))


def _cold(r: CutResult) -> dict[str, dict[str, float]]:
    """Recall@20 and MRR over the cold-start users, per method."""
    cold = r.cold
    return {m: {metric: float(v[cold, column].mean()) if cold.any() else 0.0
                for metric, column in (("recall@20", 1), ("mrr", 2))} for m, v in r.metrics.items()}


def format_cut(r: CutResult, config: EvalConfig) -> str:
    lines = [
        f"== {r.dataset} @ {r.quantile:.0%} quantile (cut {time.strftime('%Y-%m-%d', time.gmtime(r.cut_time))}): "
        f"{r.users.shape[0]} users{_sampled(r)}, {r.truth_pairs} new contacts"
        f" ({r.dropped_pairs} more to users who joined after the cut, not scored), "
        f"{int(r.cold.sum())} cold-start users",
    ]
    if r.model_info:
        lines.append("   ranker: " + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in r.model_info.items() if k != "inner_cuts"))
    lines += ["   " + line for line in _method_table(_methods(r, config)).splitlines()]
    lines.append(_target_line(r, config))
    lines.append("   Recall@20 on new contacts who replied: " + ", ".join(
        f"{m} {_fmt(float(v.mean()) if v.shape[0] else 0.0)}" for m, v in r.replied.items())
        + f" ({r.replied[OURS].shape[0]} users)")
    cold = _cold(r)
    lines.append(f"   cold start (<= {COLD_MAX_CONTACTS} contacts, {int(r.cold.sum())} users) Recall@20 / MRR: "
                 + ", ".join(f"{m} {_fmt(c['recall@20'])}/{_fmt(c['mrr'])}" for m, c in cold.items()))
    lines.extend(_quiet_lines(r, config))
    if r.pool:
        lines.append("   pool recall (share of each user's new contacts among the candidates, mean over users): "
                     + ", ".join(f"{name} {_fmt(float(v.mean()) if v.shape[0] else 0.0)}"
                                 for name, v in r.pool.items()))
    if NODE2VEC in r.metrics and "embedding" in r.metrics:
        ours_emb, n2v = r.metrics["embedding"], r.metrics[NODE2VEC]
        ci = paired_bootstrap(ours_emb[:, 1], n2v[:, 1], config.n_boot, config.seed)
        lines.append(f"   embedding vs {NODE2VEC} Recall@20 {_fmt(float(ours_emb[:, 1].mean()))} / "
                     f"{_fmt(float(n2v[:, 1].mean()))} (Δ {ci.mean:+.4f} [{ci.low:+.4f}, {ci.high:+.4f}]), MRR "
                     f"{_fmt(float(ours_emb[:, 2].mean()))} / {_fmt(float(n2v[:, 2].mean()))}; training s "
                     f"{r.timings.get('build.embed', 0.0):.2f} / {r.timings.get('node2vec.train', 0.0):.1f}")
    share = _share_summary(r, config)
    if share is not None:
        lines.append(f"   share sheet MRR ({share['senders']} senders): {OURS} {_fmt(share[OURS])}, "
                     f"{RECENT} {_fmt(share[RECENT])} (Δ {share['delta']:+.4f} [{share['low']:+.4f}, "
                     f"{share['high']:+.4f}])")
    return "\n".join(lines)


def _sampled(r: CutResult) -> str:
    if r.users_with_truth > r.users.shape[0]:
        return f" (seeded sample of the {r.users_with_truth} with a new contact)"
    return ""


def _quiet_lines(r: CutResult, config: EvalConfig) -> list[str]:
    """Every method on the quiet users alone, Δ against ours with its
    interval, and whether ours beats the best baseline there (interval of
    ours - best above 0) in Recall@20."""
    quiet = r.quiet
    head = f"   quiet users (<= {QUIET_MAX_EVENTS} interactions before the cut, {int(quiet.sum())} users):"
    if not quiet.any():
        return [head + " none"]
    lines = [head, f"     {'method':<22}{'R@20':>8} {'Δ vs ours [95% CI]':>28}{'MRR':>8}"]
    ours = r.metrics[OURS][quiet]
    for name, values in r.metrics.items():
        v = values[quiet]
        cell = ""
        if name != OURS:
            ci = paired_bootstrap(v[:, 1], ours[:, 1], config.n_boot, config.seed)
            cell = f"{ci.mean:+.4f} [{ci.low:+.4f}, {ci.high:+.4f}]"
        lines.append(f"     {name:<22}{_fmt(float(v[:, 1].mean())):>8} {cell:>28}"
                     f"{_fmt(float(v[:, 2].mean())):>8}")
    base = [m for m in r.metrics if m not in (OURS, LINEAR)]
    if base:
        best = max(base, key=lambda m: (float(r.metrics[m][quiet, 1].mean()), m))
        ci = paired_bootstrap(ours[:, 1], r.metrics[best][quiet, 1], config.n_boot, config.seed)
        verdict = "beats" if ci.low > 0 else "does not clearly beat"
        lines.append(f"   quiet users: {OURS} {verdict} the best baseline ({best}) in Recall@20, "
                     f"(ours - best) CI [{ci.low:+.4f}, {ci.high:+.4f}]")
    return lines


def _share_summary(r: CutResult, config: EvalConfig) -> dict[str, float] | None:
    """Share sheet MRR, ours and most-recent-first, with the bootstrap of
    (recent - ours); None when no sender had contacts."""
    s_ours, s_recent = r.share[OURS], r.share[RECENT]
    if not s_ours.shape[0]:
        return None
    ci = paired_bootstrap(s_recent, s_ours, config.n_boot, config.seed)
    return {"senders": s_ours.shape[0], OURS: float(s_ours.mean()), RECENT: float(s_recent.mean()),
            "delta": ci.mean, "low": ci.low, "high": ci.high}


def _target(r: CutResult, config: EvalConfig) -> dict[str, object] | None:
    """Recall@20 >= 1.15x the best baseline with the bootstrap lower bound
    of (ours - best) above 0, and MRR not below the best baseline's; None
    without baselines or users."""
    base = [m for m in r.metrics if m not in (OURS, LINEAR)]
    if not base or r.users.shape[0] == 0:
        return None
    r20 = {m: float(r.metrics[m][:, 1].mean()) for m in base}
    best = max(base, key=lambda m: (r20[m], m))
    ours = r.metrics[OURS]
    ratio = float(ours[:, 1].mean()) / r20[best] if r20[best] > 0 else float("inf")
    ci = paired_bootstrap(ours[:, 1], r.metrics[best][:, 1], config.n_boot, config.seed)
    mrr_best = max(float(r.metrics[m][:, 2].mean()) for m in base)
    mrr_ok = float(ours[:, 2].mean()) >= mrr_best
    return {"best_baseline": best, "recall@20_ratio": ratio, "low": ci.low, "high": ci.high,
            "best_baseline_mrr": mrr_best, "mrr_ok": mrr_ok, "met": ratio >= 1.15 and ci.low > 0 and mrr_ok}


def _target_line(r: CutResult, config: EvalConfig) -> str:
    t = _target(r, config)
    if t is None:
        return "   target: no baselines"
    return (f"   target: Recall@20 {t['recall@20_ratio']:.2f}x best baseline ({t['best_baseline']}), (ours - best) "
            f"CI [{t['low']:+.4f}, {t['high']:+.4f}], MRR {'>=' if t['mrr_ok'] else '<'} best baseline "
            f"{t['best_baseline_mrr']:.4f} -> {'MET' if t['met'] else 'NOT MET'}")


def cut_document(r: CutResult, config: EvalConfig) -> dict[str, object]:
    """One cut's summary as `contactgraph eval --json` prints it: the
    numbers of format_cut's report."""
    target = _target(r, config)
    if target is not None and target["recall@20_ratio"] == float("inf"):
        target["recall@20_ratio"] = None  # JSON has no infinity
    return {
        "dataset": r.dataset, "quantile": r.quantile, "cut_time": r.cut_time, "users": int(r.users.shape[0]),
        "new_contacts": r.truth_pairs, "dropped_new_contacts": r.dropped_pairs, "cold_users": int(r.cold.sum()),
        "ranker": {k: v for k, v in r.model_info.items() if k != "inner_cuts"},
        "methods": _methods(r, config), "target": target,
        "replied_recall@20": {m: float(v.mean()) if v.shape[0] else 0.0 for m, v in r.replied.items()},
        "replied_users": int(r.replied[OURS].shape[0]), "cold_start": _cold(r),
        "share_sheet_mrr": _share_summary(r, config), "seconds": dict(r.timings),
    }


def run(data_dir: Path, datasets: list[str], config: EvalConfig,
        out: Callable[[str], None] = print) -> list[CutResult]:
    results = []
    if config.node2vec_venv is not None:
        if node2vec.executable(config.node2vec_venv) is None:
            out(f"-- node2vec: no pecanpy in {config.node2vec_venv} (make node2vec-venv installs it); skipped")
            config = dataclasses.replace(config, node2vec_venv=None)
        else:
            out(f"-- node2vec: {config.node2vec_config.describe()}, on the graph our embedding factorises")
    for name in datasets:
        dataset = load(name, data_dir)
        for q in config.cuts:
            out(f"-- {name} @ {q:.0%}: building the snapshot from the events before the cut ...")
            r = evaluate_cut(dataset, q, config, progress=out)
            out(format_cut(r, config))
            out("   seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r.timings.items()))
            results.append(r)
    return results
