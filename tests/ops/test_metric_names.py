"""Every metric and label that alerts.yml and the Grafana dashboard query is one our code exports,
so renaming a metric or a label, or a saga status, fails here instead of silencing an alert.

What the code exports is read from the source (`ast`: every prometheus_client Counter, Gauge,
Histogram and Summary under services/, shared/ and simulators/, with its label names), and that
reading is checked against prometheus_client's registry after importing those very modules.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import prometheus_client
import pytest

from schemas.registry import REGISTRY as MESSAGE_TYPES
from services.orchestrator.saga import TERMINAL, Status
from tests.ops.observability import (
    ROOT,
    Usage,
    alert_rules,
    dashboard,
    dashboard_expressions,
    read,
)

SOURCES = ("services", "shared", "simulators")
KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary"}
# the suffixes each kind's samples carry (prometheus-client's text format; `_created` only in
# OpenMetrics), and the label its samples add
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}
SAMPLE_LABELS = {"_bucket": {"le"}, "": set()}
TARGET_LABELS = {"instance", "job"}  # Prometheus adds them to every scraped series
IN_FLIGHT = {s.value for s in Status} - {s.value for s in TERMINAL}
FINAL = {s.value for s in TERMINAL}


@dataclass(frozen=True)
class Exported:
    name: str  # as prometheus-client registers it: a counter's without `_total`
    kind: str
    labels: frozenset[str]
    module: str


def _prometheus_names(tree: ast.Module) -> set[str]:
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client"
        for alias in node.names
        if alias.name in KINDS
    }


def scan(path: Path) -> Iterable[Exported]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    kinds = _prometheus_names(tree)
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in kinds:  # collections.Counter and friends
            continue
        name = node.args[0]
        unreadable = f"{path}:{node.lineno}: a metric name this test cannot read"
        assert isinstance(name, ast.Constant), unreadable
        assert isinstance(name.value, str), unreadable
        labels_node = next((k.value for k in node.keywords if k.arg == "labelnames"), None)
        if labels_node is None and len(node.args) > 2:
            labels_node = node.args[2]
        labels = ast.literal_eval(labels_node) if labels_node is not None else ()
        kind = KINDS[node.func.id]
        registered = name.value.removesuffix("_total") if kind == "counter" else name.value
        yield Exported(registered, kind, frozenset(labels), module)


@pytest.fixture(scope="module")
def exported() -> dict[str, Exported]:
    found = [e for top in SOURCES for path in (ROOT / top).rglob("*.py") for e in scan(path)]
    return {e.name: e for e in found}


@pytest.fixture(scope="module")
def series(exported: dict[str, Exported]) -> dict[str, tuple[Exported, frozenset[str]]]:
    """Every series name a scrape of ours can return, with the labels it carries."""
    return {
        e.name + suffix: (e, e.labels | SAMPLE_LABELS.get(suffix, set()) | TARGET_LABELS)
        for e in exported.values()
        for suffix in SUFFIXES[e.kind]
    }


def problems(
    usage: Usage, series: dict[str, tuple[Exported, frozenset[str]]], where: str
) -> list[str]:
    found: list[str] = []
    known: set[str] = set()
    for selector in usage.selectors:
        if selector.metric not in series:
            found.append(f"{where}: {selector.metric} is not exported by our code")
            continue
        _, labels = series[selector.metric]
        known |= labels
        for matcher in selector.matchers:
            if matcher.label not in labels:
                found.append(f"{where}: {selector.metric} has no label {matcher.label!r}")
            elif matcher.label == "state":
                unknown = matcher.alternatives() - {s.value for s in Status}
                found += [f"{where}: no saga status {v!r}" for v in sorted(unknown)]
            elif matcher.label == "type":
                unknown = {t for t in matcher.alternatives() if not MESSAGE_TYPES.knows(t)}
                found += [f"{where}: no message type {t!r}" for t in sorted(unknown)]
    found += [f"{where}: no metric here has label {g!r}" for g in sorted(usage.grouping - known)]
    return found


def test_the_source_scan_finds_what_the_registry_holds(exported: dict[str, Exported]) -> None:
    for module in {e.module for e in exported.values()}:
        importlib.import_module(module)
    registered = {
        (family.name, family.type)
        for family in prometheus_client.REGISTRY.collect()
        if family.name.startswith("leadline_")
    }
    assert registered == {(e.name, e.kind) for e in exported.values()}
    assert {"leadline_consumer_lag", "leadline_saga_states", "leadline_http_requests"} <= {
        e.name for e in exported.values()
    }


def test_alerts_query_only_exported_metrics_and_labels(
    series: dict[str, tuple[Exported, frozenset[str]]],
) -> None:
    found = [
        problem
        for rule in alert_rules()
        for problem in problems(read(rule["expr"]), series, rule["alert"])
    ]
    assert found == []


def test_the_dashboard_queries_only_exported_metrics_and_labels(
    series: dict[str, tuple[Exported, frozenset[str]]],
) -> None:
    board = dashboard()
    found = [
        problem
        for title, expr in dashboard_expressions(board)
        for problem in problems(read(expr), series, title)
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = variable["query"]["query"].removeprefix("label_values(")[:-1].split(",")
            usage = read(f"sum by ({label.strip()}) ({metric.strip()})")
            found += problems(usage, series, f"variable {variable['name']}")
    assert found == []


def test_saga_state_matchers_name_every_waiting_or_every_final_status() -> None:
    """A new waiting status must join the stuck-saga rule: a list of states is either all the
    waiting ones or all the final ones, never a stale subset."""
    expressions = [rule["expr"] for rule in alert_rules()]
    expressions += [expr for _, expr in dashboard_expressions(dashboard())]
    lists = [
        matcher.alternatives()
        for expr in expressions
        for selector in read(expr).selectors
        for matcher in selector.matchers
        if selector.metric == "leadline_saga_states" and matcher.op == "=~"
    ]
    assert lists, "no list of saga states found"
    assert [states for states in lists if states not in (IN_FLIGHT, FINAL)] == []
    stuck = next(rule for rule in alert_rules() if rule["alert"] == "LeadlineSagasStuck")
    stuck_states = [m.alternatives() for s in read(stuck["expr"]).selectors for m in s.matchers]
    assert IN_FLIGHT in stuck_states


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum(rate(leadline_dead_letter_total[5m]))", "not exported"),  # a renamed metric
        ("leadline_consumer_lag{group='checkout'}", "no label 'group'"),
        ("sum by (service) (leadline_outbox_backlog)", "no metric here has label 'service'"),
        ('leadline_saga_states{state="waiting"}', "no saga status 'waiting'"),
        ('leadline_saga_transitions_total{type="DeadlinePassed"}', "no message type"),
        ("histogram_quantile(0.9, rate(leadline_handler_seconds[5m]))", "not exported"),
    ],
)
def test_a_query_our_code_does_not_answer_is_caught(
    expr: str, expected: str, series: dict[str, tuple[Exported, frozenset[str]]]
) -> None:
    [found] = problems(read(expr), series, "probe")
    assert expected in found


def test_the_reader_finds_every_selector_and_grouping_label() -> None:
    usage = read(
        'sum by (consumer, topic) (leadline_consumer_lag{partition!="0"}) > 0 unless on (consumer)'
        " sum by (consumer) (rate(leadline_messages_handled_total[5m] offset 10m)) > 1e3"
        ' or histogram_quantile(0.99, sum by (le) (rate(x_bucket{a=~"b|c"}[$__rate_interval])))'
    )
    assert [s.metric for s in usage.selectors] == [
        "leadline_consumer_lag",
        "leadline_messages_handled_total",
        "x_bucket",
    ]
    assert usage.selectors[2].matchers[0].alternatives() == {"b", "c"}
    assert usage.grouping == {"consumer", "topic", "le"}
    with pytest.raises(ValueError, match="without a metric name"):
        read('{__name__="leadline_consumer_lag"}')
