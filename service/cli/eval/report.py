"""`contactgraph eval --report DIR`: the evaluation as one self-contained
HTML page (DIR/report.html) that can be mailed or attached to a review.

The page holds, for every cut: the method table with the same numbers as
`eval --json` (cut_document), Recall@k for k = 1..depth per method with a
95% bootstrap band, pool recall per candidate source, and the cold-start
and quiet-user breakdown; per data set, Recall@20 and MRR over the cuts
with their bands; and a summary table of every cut on top.

Plots are drawn by matplotlib on a bare Figure (never pyplot, so no GUI
backend and no global figure state) and inlined as SVG; the HTML is built
with the standard library, every text escaped. Nothing is fetched: no
external CSS, scripts, fonts or images."""

from __future__ import annotations

import html
import io
import re
import time
from collections.abc import Iterable
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from service.cli.eval.harness import (
    COLD_MAX_CONTACTS,
    OURS,
    POOL_ALL,
    QUIET_MAX_EVENTS,
    CutResult,
    EvalConfig,
    cut_document,
)
from service.cli.eval.metrics import METRICS

REPORT_FILE = "report.html"
_LEVEL = 0.95
# Chunks of bootstrap resamples so that the (resamples x users) weights stay
# within ~16 MB however many users a cut has.
_WEIGHT_CELLS = 2_000_000

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
tr.ours td { font-weight: bold; }
figure { margin: 0.5em 0 1.5em; }
figcaption { font-size: 0.85em; color: #555; }
.met { color: #1a7f37; } .notmet { color: #b42318; }
"""


def bootstrap_band(values: np.ndarray, n_boot: int, seed: int, level: float = _LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over users (rows) of
    ``values`` (n_users, n_points), per column; users resampled with
    replacement. Returns (low, high), each (n_points,); zeros without
    users. Deterministic for a seed."""
    values = np.asarray(values, np.float64)
    n, width = values.shape
    if n == 0 or n_boot <= 0:
        mean = values.mean(axis=0) if n else np.zeros(width)
        return mean, mean
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, width))
    chunk = max(1, _WEIGHT_CELLS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        rows = stop - start
        # How often each user is drawn in each resample, as weights: the
        # resampled means are then one matrix product.
        draws = rng.integers(0, n, (rows, n)) + (np.arange(rows) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        means[start:stop] = counts @ values / n
    alpha = (1.0 - level) / 2.0
    return np.quantile(means, alpha, axis=0), np.quantile(means, 1.0 - alpha, axis=0)


# -- figures ------------------------------------------------------------------

def _svg(fig: Figure, salt: str) -> str:
    """The figure as an inline <svg> element. A distinct hash salt per
    figure keeps the clip-path ids of several SVGs on one page apart."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    # Drop the XML prolog and DOCTYPE: inside HTML the <svg> element stands alone.
    return text[text.index("<svg"):]


def _recall_curve_figure(r: CutResult, config: EvalConfig, salt: str) -> str:
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for name, curve in r.recall_curves.items():
        if curve.shape[0] == 0:
            continue
        ks = np.arange(1, curve.shape[1] + 1)
        low, high = bootstrap_band(curve, config.n_boot, config.seed)
        line, = ax.plot(ks, curve.mean(axis=0), label=name, linewidth=2.2 if name == OURS else 1.2)
        ax.fill_between(ks, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("k (log scale)")
    ax.set_ylabel("Recall@k")
    ax.set_title(f"{r.dataset} @ {r.quantile:.0%}: Recall@k, {_LEVEL:.0%} bootstrap band")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return _svg(fig, salt)


def _over_cuts_figure(cuts: list[CutResult], config: EvalConfig, salt: str) -> str:
    """Recall@20 and MRR per method over the cuts of one data set."""
    fig = Figure(figsize=(9.5, 3.8))
    axes = fig.subplots(1, 2)
    methods = list(dict.fromkeys(m for r in cuts for m in r.metrics))
    for ax, (metric, column) in zip(axes, (("Recall@20", 1), ("MRR", 2)), strict=True):
        for name in methods:
            present = [r for r in cuts if name in r.metrics and r.metrics[name].shape[0]]
            if not present:
                continue
            xs = np.array([r.quantile for r in present])
            mean = np.array([float(r.metrics[name][:, column].mean()) for r in present])
            bands = [bootstrap_band(r.metrics[name][:, [column]], config.n_boot, config.seed) for r in present]
            low = np.array([float(b[0][0]) for b in bands])
            high = np.array([float(b[1][0]) for b in bands])
            # Error bars as well as the band: with a single cut a band has no width.
            bars = ax.errorbar(xs, mean, yerr=np.vstack([mean - low, high - mean]), marker="o", capsize=3,
                               label=name, linewidth=2.2 if name == OURS else 1.2)
            ax.fill_between(xs, low, high, color=bars.lines[0].get_color(), alpha=0.15, linewidth=0)
        ax.set_xlabel("cut (time quantile)")
        ax.set_ylabel(metric)
        ax.set_title(f"{cuts[0].dataset}: {metric}, {_LEVEL:.0%} bootstrap")
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize="small", loc="best")
    return _svg(fig, salt)


def _pool_figure(r: CutResult, salt: str) -> str:
    names = list(r.pool)
    means = [float(v.mean()) if v.shape[0] else 0.0 for v in r.pool.values()]
    fig = Figure(figsize=(7.0, 0.45 * len(names) + 1.2))
    ax = fig.add_subplot()
    colours = ["#444444" if n == POOL_ALL else "#4c78a8" for n in names]
    ax.barh(names, means, color=colours)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of each user's new contacts among the candidates (mean over users)")
    ax.set_title(f"{r.dataset} @ {r.quantile:.0%}: pool recall per source")
    return _svg(fig, salt)


# -- HTML -----------------------------------------------------------------------

def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _num(x: float) -> str:
    return f"{x:.4f}"


def _table(headers: Iterable[str], rows: Iterable[tuple[list[str], str]]) -> str:
    """Rows are (cells, css class of the row); cells are plain text,
    escaped here; cells that look like numbers are right-aligned."""
    out = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"]
    for cells, cls in rows:
        tds = "".join(f'<td class="num">{_e(c)}</td>' if re.fullmatch(r"[-+0-9.,x \[\]]+", c) else f"<td>{_e(c)}</td>"
                      for c in cells)
        out.append(f'<tr class="{_e(cls)}">{tds}</tr>' if cls else f"<tr>{tds}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _summary(results: list[CutResult], docs: list[dict[str, object]]) -> str:
    rows = []
    for r, doc in zip(results, docs, strict=True):
        methods = doc["methods"]
        assert isinstance(methods, dict)
        ours = methods[OURS]
        target = doc["target"]
        if isinstance(target, dict):
            ratio = target["recall@20_ratio"]
            verdict = [str(target["best_baseline"]), "inf" if ratio is None else f"{ratio:.2f}x",
                       "MET" if target["met"] else "NOT MET"]
        else:
            verdict = ["", "", "no baselines"]
        rows.append(([r.dataset, f"{r.quantile:.0%}", str(doc["users"]), str(doc["new_contacts"]),
                      str(doc["cold_users"]), str(int(r.quiet.sum())), _num(ours["recall@20"]["mean"]),
                      _num(ours["mrr"]["mean"]), *verdict], ""))
    return _table(["data set", "cut", "users", "new contacts", "cold users", "quiet users", f"{OURS} R@20",
                   f"{OURS} MRR", "best baseline", "R@20 ratio", "target"], rows)


def _method_table(doc: dict[str, object]) -> str:
    methods = doc["methods"]
    assert isinstance(methods, dict)
    headers = ["method"]
    for metric in METRICS:
        headers += [metric, f"Δ vs {OURS} [95% CI]"]
    rows = []
    for name, cells in methods.items():
        row = [name]
        for metric in METRICS:
            c = cells[metric]
            row += [_num(c["mean"]),
                    f"{c['delta']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]" if "delta" in c else ""]
        rows.append((row, "ours" if name == OURS else ""))
    return _table(headers, rows)


def _breakdown(r: CutResult, doc: dict[str, object]) -> str:
    """Cold-start users (cut_document's cold_start) and quiet users,
    Recall@20 and MRR per method."""
    cold = doc["cold_start"]
    assert isinstance(cold, dict)
    quiet = r.quiet
    rows = []
    for name, values in r.metrics.items():
        q = values[quiet] if quiet.shape[0] == values.shape[0] else values[:0]
        q_cells = [_num(float(q[:, 1].mean())), _num(float(q[:, 2].mean()))] if q.shape[0] else ["", ""]
        rows.append(([name, _num(cold[name]["recall@20"]), _num(cold[name]["mrr"]), *q_cells],
                     "ours" if name == OURS else ""))
    n_cold, n_quiet = int(r.cold.sum()), int(quiet.sum())
    return _table(["method", f"cold R@20 ({n_cold} users)", "cold MRR",
                   f"quiet R@20 ({n_quiet} users)", "quiet MRR"], rows)


def render_report(results: list[CutResult], config: EvalConfig, command: str = "") -> str:
    """The whole page as one HTML string."""
    docs = [cut_document(r, config) for r in results]
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>contactgraph eval report</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        "<h1>contactgraph eval report</h1>",
        f"<p>Generated {_e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}"
        + (f" by <code>{_e(command)}</code>" if command else "")
        + f"; {config.n_boot} bootstrap resamples (seed {config.seed}), ranked lists of depth {config.depth}. "
          "Δ columns are the paired bootstrap of (method - pipeline) over the same users; bands are "
          f"{_LEVEL:.0%} percentile bootstrap intervals of the mean over users.</p>",
        '<h2 id="summary">Every cut</h2>',
        _summary(results, docs) if results else "<p>No cuts were evaluated.</p>",
    ]
    salt = 0
    by_dataset: dict[str, list[CutResult]] = {}
    for r in results:
        by_dataset.setdefault(r.dataset, []).append(r)
    for dataset, cuts in by_dataset.items():
        parts.append(f'<h2 id="{_e(dataset)}">{_e(dataset)}</h2>')
        salt += 1
        parts.append(_figure(_over_cuts_figure(cuts, config, f"cuts{salt}"),
                             "Recall@20 and MRR per method over the cuts, with the bootstrap interval of each."))
        for r in cuts:
            doc = docs[results.index(r)]
            cut_day = time.strftime("%Y-%m-%d", time.gmtime(r.cut_time))
            parts.append(f'<h3 id="{_e(dataset)}-{r.quantile:.0%}">{_e(dataset)} @ {r.quantile:.0%} '
                         f"(cut {_e(cut_day)})</h3>")
            sampled = (f", a seeded sample of the {r.users_with_truth} with a new contact"
                       if r.users_with_truth > r.users.shape[0] else "")
            parts.append(f"<p>{doc['users']} users{_e(sampled)}, {doc['new_contacts']} new contacts "
                         f"({doc['dropped_new_contacts']} more to users who joined after the cut, not scored).</p>")
            parts.append('<h4>Methods</h4>')
            parts.append(_method_table(doc))
            parts.append('<h4>Recall@k</h4>')
            if r.recall_curves:
                salt += 1
                parts.append(_figure(_recall_curve_figure(r, config, f"recall{salt}"),
                                     "Recall@k per method for k = 1.." f"{config.depth}, mean over users, "
                                     "with the bootstrap band."))
            else:
                parts.append("<p>No Recall@k curves in this result.</p>")
            parts.append('<h4 class="pool">Pool recall per source</h4>')
            if r.pool:
                salt += 1
                parts.append(_figure(_pool_figure(r, f"pool{salt}"),
                                     f"'{POOL_ALL}' is the union, the most the ranker can put in front of a user."))
                parts.append(_table(["source", "pool recall"],
                                    [([name, _num(float(v.mean()) if v.shape[0] else 0.0)], "")
                                     for name, v in r.pool.items()]))
            else:
                parts.append("<p>No pool recall in this result.</p>")
            parts.append('<h4 class="cold-start">Cold start and quiet users</h4>')
            parts.append(f"<p>Cold start: at most {COLD_MAX_CONTACTS} contacts before the cut; quiet: at most "
                         f"{QUIET_MAX_EVENTS} interactions before the cut.</p>")
            parts.append(_breakdown(r, doc))
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(directory: Path, results: list[CutResult], config: EvalConfig, command: str = "") -> Path:
    """Write DIR/report.html (creating DIR) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / REPORT_FILE
    path.write_text(render_report(results, config, command), encoding="utf-8")
    return path
