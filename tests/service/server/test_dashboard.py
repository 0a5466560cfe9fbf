"""The Grafana dashboard in deploy/grafana/ queries only series a live server
exports: every PromQL expression in it (panels and template variables) is
read for the metric names it selects and the labels it matches or groups
by, and each must be in a real scrape after some traffic.

The metric names are found without a PromQL parser: string literals, label
matchers ``{...}``, ranges ``[...]``, grouping clauses ``by (...)`` and
Grafana variables are cut out, and what is left that looks like an
identifier and is not a function call or a keyword is a series name. Names
are compared with the scrape's sample names (``foo_total``, ``foo_bucket``,
``foo_count``: what PromQL sees), so no suffix is guessed; a family the
server declares but has no sample of yet (a shed counter before anything is
shed) counts with the sample names its type gives it."""

from __future__ import annotations

import copy
import json
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contactgraph.v1 import (
    graph_service_pb2_grpc,
    safety_service_pb2,
    safety_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)
from tests.conftest import TinyNetwork
from tests.service.server.test_metrics import follow_request, start_wal_server

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "contactgraph.json"

# Labels Prometheus adds to every series when it scrapes a target: never in
# the server's own output.
TARGET_LABELS = frozenset({"job", "instance"})

_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and",
                       "or", "unless", "inf", "nan"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
# An identifier not inside a number or another name, and not a call.
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)


@dataclass
class Query:
    """What one PromQL expression asks of the server."""

    series: set[str] = field(default_factory=set)
    # {series: labels matched in its selector}
    matched: dict[str, set[str]] = field(default_factory=dict)
    grouped: set[str] = field(default_factory=set)


def parse_promql(expr: str) -> Query:
    """The series names and label names ``expr`` uses. Raises ValueError
    for a selector without a metric name (``{__name__=~...}``), which this
    reading cannot check."""
    query = Query()
    text = _VARIABLE.sub(" ", _STRING.sub('""', expr))
    for match in _SELECTOR.finditer(text):
        name, body = match.group(1), match.group(2)
        if name is None or name in _KEYWORDS:
            raise ValueError(f"selector without a metric name in {expr!r}")
        query.matched.setdefault(name, set()).update(_MATCHER_LABEL.findall(body))
    text = _SELECTOR.sub(lambda m: f" {m.group(1)} ", text)
    text = _RANGE.sub(" ", text)
    for match in _GROUPING.finditer(text):
        query.grouped.update(label.strip() for label in match.group(1).split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    query.series = {name for name in _IDENT.findall(text) if name.lower() not in _KEYWORDS}
    query.series |= set(query.matched)
    return query


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(where, PromQL expression, label it must have or None) for every
    panel target and every query variable (``label_values(expr, label)``)."""
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"], None
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        where = f"variable ${variable['name']}"
        label_values = _LABEL_VALUES.match(text)
        if label_values is not None:
            yield where, label_values.group(1), label_values.group(2)
        else:
            yield where, text, None


def exported_series(exposition: str) -> dict[str, set[str] | None]:
    """{series name PromQL can select: label names seen on it}, from a
    scrape in the text format. A declared family without samples gives the
    names its type exposes, with labels None (unknown)."""
    out: dict[str, set[str] | None] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum"),
                "gauge": ("",), "untyped": ("",), "unknown": ("",), "info": ("_info",)}
    for family in text_string_to_metric_families(exposition):
        for suffix in suffixes.get(family.type, ("",)):
            out.setdefault(family.name + suffix, None)
        for sample in family.samples:
            labels = out.get(sample.name) or set()
            labels.update(sample.labels)
            out[sample.name] = labels
    return out


def dashboard_problems(dashboard: dict[str, Any], exported: dict[str, set[str] | None]) -> list[str]:
    """Every series or label the dashboard asks for that the scrape lacks,
    one line each, naming the panel or variable; [] if none."""
    problems = []
    for where, expr, needed_label in dashboard_queries(dashboard):
        try:
            query = parse_promql(expr)
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        if not query.series:
            problems.append(f"{where}: no metric name found in {expr!r}")
        missing = sorted(name for name in query.series if name not in exported)
        problems.extend(f"{where}: series {name} is not exported" for name in missing)
        known = {name: exported[name] for name in query.series if name in exported}
        for name, labels in query.matched.items():
            have = known.get(name)
            if have is not None:
                problems.extend(f"{where}: {name} has no label {label}"
                                for label in sorted(labels - have - TARGET_LABELS))
        # A grouping label must be on some series of the expression (only
        # checkable when every series has samples to read labels from).
        if known and len(known) == len(query.series) and all(v is not None for v in known.values()):
            union = set().union(*(v for v in known.values() if v is not None))
            wanted = query.grouped | ({needed_label} if needed_label else set())
            problems.extend(f"{where}: no series of {expr!r} has label {label}"
                            for label in sorted(wanted - union - TARGET_LABELS))
    return problems


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


@pytest.fixture(scope="module")
def live_scrape(tiny_network: TinyNetwork, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str] | None]:
    """The /metrics of a live server with a write-ahead log after
    suggestions, a check, an invalid call and a write."""
    server = start_wal_server(tiny_network.snapshot_dir, tmp_path_factory.mktemp("dashboard"))
    try:
        assert server.metrics_endpoint is not None
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            suggest = suggestion_service_pb2_grpc.SuggestionServiceStub(channel)
            for _ in range(2):
                suggest.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=1), timeout=5)
            with pytest.raises(grpc.RpcError):
                suggest.SuggestContacts(suggestion_service_pb2.SuggestContactsRequest(user_id=-1), timeout=5)
            safety_service_pb2_grpc.SafetyServiceStub(channel).CheckMessaging(
                safety_service_pb2.CheckMessagingRequest(sender_id=1, recipient_id=2), timeout=5)
            graph_service_pb2_grpc.GraphServiceStub(channel).ApplyEvents(follow_request(), timeout=5)
        url = f"http://127.0.0.1:{server.metrics_endpoint.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as http:
            text = http.read().decode()
    finally:
        server.stop(0)
    return exported_series(text)


class TestPromqlReading:
    @pytest.mark.parametrize(("expr", "series", "grouped"), [
        ("process_resident_memory_bytes", {"process_resident_memory_bytes"}, set()),
        ('rate(process_cpu_seconds_total{job=~"$job"}[$__rate_interval])', {"process_cpu_seconds_total"}, set()),
        ('histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket'
         '{job=~"$job", instance=~"$instance"}[5m])))', {"grpc_server_handling_seconds_bucket"},
         {"le", "grpc_method"}),
        ("time() - max by (instance) (contactgraph_snapshot_built_timestamp_seconds)",
         {"contactgraph_snapshot_built_timestamp_seconds"}, {"instance"}),
        ("sum(rate(a_sum[1m])) by (x) / sum(rate(a_count[1m])) by (x)", {"a_sum", "a_count"}, {"x"}),
        ('rate(x_total{code="a{b} sum(y_total)"}[1m] offset 5m) * 1e3', {"x_total"}, set()),
        ("a_total / on (lane) group_left (reason) b_total", {"a_total", "b_total"}, {"lane", "reason"}),
        ("${ds_var} + 2", set(), set()),
    ])
    def test_series_and_grouping(self, expr: str, series: set[str], grouped: set[str]) -> None:
        """Series names are what is left after strings, matchers, ranges,
        groupings, variables, calls and keywords; numbers are not names."""
        query = parse_promql(expr)
        assert query.series == series
        assert query.grouped == grouped

    def test_matched_labels(self) -> None:
        """Matcher label names are recorded against their series."""
        query = parse_promql('a_total{grpc_code!="OK", grpc_method=~"x|y"} / b_total{lane="send"}')
        assert query.matched == {"a_total": {"grpc_code", "grpc_method"}, "b_total": {"lane"}}

    def test_nameless_selector_refused(self) -> None:
        """A selector on __name__ cannot be checked, so it is refused."""
        with pytest.raises(ValueError, match="without a metric name"):
            parse_promql('{__name__=~"grpc_.*"}')

    def test_declared_family_without_samples(self) -> None:
        """A counter declared but not yet incremented still counts as
        exported (as name_total), its labels unknown."""
        exposition = "# HELP shed_total Shed.\n# TYPE shed_total counter\n"
        assert exported_series(exposition) == {"shed_total": None}


@pytest.mark.integration
class TestDashboard:
    def test_dashboard_is_importable(self) -> None:
        """Valid JSON with a uid, and every panel and variable reads from
        the datasource variable, not a hard-coded data source."""
        dashboard = load_dashboard()
        assert dashboard["uid"] and dashboard["title"]
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", panel["title"]

    def test_every_queried_series_exists(self, live_scrape: dict[str, set[str] | None]) -> None:
        """Each series and label the dashboard queries is on a live
        server's /metrics (and it queries the issue's series)."""
        dashboard = load_dashboard()
        assert dashboard_problems(dashboard, live_scrape) == []
        queried = set().union(*(parse_promql(expr).series for _, expr, _ in dashboard_queries(dashboard)))
        assert {"grpc_server_handled_total", "grpc_server_handling_seconds_bucket", "contactgraph_rpc_shed_total",
                "contactgraph_rpc_in_flight", "contactgraph_candidates_total", "contactgraph_filtered_total",
                "contactgraph_wal_fsync_seconds_sum", "contactgraph_wal_fsync_seconds_count",
                "contactgraph_snapshot_built_timestamp_seconds", "process_cpu_seconds_total",
                "process_resident_memory_bytes"} <= queried

    @pytest.mark.parametrize(("old", "new", "problem"), [
        ("grpc_server_handled_total{", "grpc_server_handled_totl{", "series grpc_server_handled_totl is not exported"),
        ("contactgraph_snapshot_built_timestamp_seconds", "contactgraph_snapshot_age_seconds",
         "series contactgraph_snapshot_age_seconds is not exported"),
        ("grpc_server_handling_seconds_bucket", "grpc_server_handling_seconds",
         "series grpc_server_handling_seconds is not exported"),
        ('grpc_code!="OK"', 'grpc_status!="OK"', "grpc_server_handled_total has no label grpc_status"),
        ("sum by (reason) (rate(contactgraph_filtered_total", "sum by (reasn) (rate(contactgraph_filtered_total",
         "has label reasn"),
        ("sum by (le, grpc_method)", "sum by (le, method)", "has label method"),
    ])
    def test_a_doctored_dashboard_fails(self, live_scrape: dict[str, set[str] | None], old: str, new: str,
                                        problem: str) -> None:
        """The same check on a copy of the dashboard with one name changed
        (a typo, a removed series, a histogram without _bucket, a wrong
        label) reports it, naming the panel."""
        dashboard = load_dashboard()
        doctored = copy.deepcopy(dashboard)
        for panel in doctored["panels"]:
            for target in panel.get("targets", []):
                if old in target["expr"]:
                    target["expr"] = target["expr"].replace(old, new, 1)
                    title = panel["title"]
                    break
            else:
                continue
            break
        else:
            pytest.fail(f"no expression in the dashboard contains {old!r}")
        problems = dashboard_problems(doctored, live_scrape)
        assert problems and all(title in p for p in problems), problems
        assert any(problem in p for p in problems), problems
