"""`contactgraph eval --report DIR`: the HTML page rendered from two small
cuts, checked for being one self-contained file holding cut_document's
numbers, a plot per section and the pool-recall and cold-start sections;
and the bootstrap band against simple cases."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from graph.ranking import RankerTrainingConfig
from service.cli.eval.harness import OURS, POOL_ALL, CutResult, EvalConfig, cut_document, evaluate_cut
from service.cli.eval.metrics import recall_curve
from service.cli.eval.report import REPORT_FILE, bootstrap_band, write_report
from tests.support.temporal import temporal_messages

CONFIG = EvalConfig(cuts=(0.7, 0.8), n_boot=30, max_users=25,
                    ranker=RankerTrainingConfig(n_estimators=10, label_fractions=(0.3,)))


class _Page(HTMLParser):
    """Table rows as lists of cell texts, every URL-bearing attribute, and
    the number of <svg> elements and data:image/png images."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.urls: list[str] = []
        self.svgs = 0
        self.pngs = 0
        self.tags: set[str] = set()
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href") and value is not None:
                self.urls.append(value)
                self.pngs += value.startswith("data:image/png;base64,")
        if tag == "svg":
            self.svgs += 1
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def results() -> list[CutResult]:
    ds = temporal_messages(n_users=80, n_events=1500)
    return [evaluate_cut(ds, q, CONFIG) for q in CONFIG.cuts]


def test_report_is_one_self_contained_page(results: list[CutResult], tmp_path: Path) -> None:
    path = write_report(tmp_path / "out", results, CONFIG, command="contactgraph eval --report out")
    assert path == tmp_path / "out" / REPORT_FILE and list(path.parent.iterdir()) == [path]
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    page = _Page()
    page.feed(text)
    # Nothing fetched: no external URLs, stylesheets or scripts.
    assert not [u for u in page.urls if not (u.startswith("#") or u.startswith("data:"))]
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text, re.I)
    assert "link" not in page.tags and "script" not in page.tags

    # A plot per data set (over the cuts) and, per cut, Recall@k and pool recall.
    assert page.svgs + page.pngs == 1 + 2 * len(results)
    assert text.count("Recall@k") >= len(results) and "MRR" in text
    # Several inline SVGs share one id space: every id a plot refers to
    # (clip paths, glyphs) must be defined once on the page.
    referenced = set(re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', text))
    for ref in {a or b for a, b in referenced}:
        assert text.count(f'id="{ref}"') == 1, ref

    for r in results:
        doc = cut_document(r, CONFIG)
        methods = doc["methods"]
        assert isinstance(methods, dict)
        # The method table: one row per method with cut_document's numbers.
        header = ["method"] + [h for m in methods[OURS] for h in (m, f"Δ vs {OURS} [95% CI]")]
        tables = [i for i, row in enumerate(page.rows) if row == header]
        assert len(tables) == len(results)
        rows = {row[0]: row for row in page.rows[tables[results.index(r)] + 1:][: len(methods)]}
        assert set(rows) == set(methods)
        for name, cells in methods.items():
            for j, cell in enumerate(cells.values()):
                assert rows[name][1 + 2 * j] == f"{cell['mean']:.4f}"
                if name != OURS:
                    assert rows[name][2 + 2 * j] == (
                        f"{cell['delta']:+.4f} [{cell['low']:+.4f}, {cell['high']:+.4f}]")
        # Cold start: cut_document's numbers for every method.
        cold = doc["cold_start"]
        assert isinstance(cold, dict)
        cold_rows = [row for row in page.rows if row and row[0] in cold and len(row) == 5]
        for name, cell in cold.items():
            assert [row[1:3] for row in cold_rows if row[0] == name][results.index(r)] == [
                f"{cell['recall@20']:.4f}", f"{cell['mrr']:.4f}"]
        # Pool recall per source and in total.
        pool_rows = {row[0]: row[1] for row in page.rows if len(row) == 2 and row[0] in r.pool}
        assert POOL_ALL in pool_rows and len(pool_rows) == len(r.pool) > 1
        assert f"{r.quantile:.0%}" in text

    assert text.count('class="pool"') == len(results) and text.count('class="cold-start"') == len(results)
    # The summary table: one row per cut.
    summary = [row for row in page.rows if row[:1] == [results[0].dataset] and len(row) == 11]
    assert [row[1] for row in summary] == [f"{q:.0%}" for q in CONFIG.cuts]


def test_text_is_escaped(results: list[CutResult], tmp_path: Path) -> None:
    text = write_report(tmp_path, results[:1], CONFIG, command="eval --data <x>&y").read_text()
    assert "<x>" not in text and "&lt;x&gt;&amp;y" in text


class TestBootstrapBand:
    def test_constant_columns_have_no_width(self) -> None:
        values = np.tile(np.array([0.2, 0.5]), (40, 1))
        low, high = bootstrap_band(values, 100, seed=1)
        np.testing.assert_allclose(low, [0.2, 0.5])
        np.testing.assert_allclose(high, [0.2, 0.5])

    def test_band_covers_the_mean_and_is_deterministic(self) -> None:
        values = np.random.default_rng(3).random((300, 3))
        low, high = bootstrap_band(values, 200, seed=5)
        assert np.all(low < values.mean(axis=0)) and np.all(values.mean(axis=0) < high)
        again = bootstrap_band(values, 200, seed=5)
        np.testing.assert_array_equal(low, again[0])
        np.testing.assert_array_equal(high, again[1])

    def test_no_users(self) -> None:
        low, high = bootstrap_band(np.zeros((0, 4)), 50, seed=0)
        assert low.tolist() == high.tolist() == [0.0] * 4


def test_recall_curve() -> None:
    """Hits at ranks 2 and 4 of 3 relevant; a short list keeps its last value."""
    curve = recall_curve(np.array([5, 3, 9, 1]), np.array([3, 1, 7]), 6)
    np.testing.assert_allclose(curve, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert recall_curve(np.array([1]), np.array([], np.int64), 3).tolist() == [0.0, 0.0, 0.0]
