"""What tests/ops reads of deploy/observability/: the alert rules, the dashboard's queries, the
metric selectors inside them, and promtool.

PromQL is read by a small tokenizer rather than a parser: every selector (metric name and label
matchers) and every grouping label (`by`, `without`, `on`, `ignoring`, `group_left/right`) is
found, and a character it does not know is an error, so nothing is skipped silently.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
ALERTS = OBSERVABILITY / "alerts.yml"
ALERTS_TEST = OBSERVABILITY / "alerts_test.yml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
INSTALL = "bash deploy/local/tools.sh promtool"

# Grafana's own variables, as Prometheus would see them once Grafana has filled them in
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}


def promtool(*args: str, cwd: Path = OBSERVABILITY) -> subprocess.CompletedProcess[str]:
    """Runs promtool; a machine without it fails the test (a skipped rule check reads like a
    passing one)."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(f"promtool is not on PATH: {INSTALL} installs it (Debian's prometheus)")
    return subprocess.run(
        [found, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_expressions(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, rows' nested panels included."""
    for panel in board["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def as_prometheus_sees_it(expr: str) -> str:
    """Grafana's variables filled in: its own ones by typical values, the dashboard's (in
    label matchers) by "match anything"."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # = != =~ !~
    value: str

    def alternatives(self) -> set[str]:
        """The values a `=`/`=~` matcher selects, when it lists them (`a|b|c`)."""
        if self.op == "=":
            return {self.value}
        if self.op == "=~" and re.fullmatch(r"[\w-]+(\|[\w-]+)*", self.value):
            return set(self.value.split("|"))
        raise ValueError(f"{self.label}{self.op}{self.value!r} names no fixed values")


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class Usage:
    selectors: tuple[Selector, ...]
    grouping: frozenset[str]  # labels named by by/without/on/ignoring/group_left/group_right


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])
    |(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-z]*)
    |(?P<variable>\$\{?\w+\}?)
    |(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>(){},])
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "unless", "bool", "offset"}
# aggregations may put their grouping before the parenthesis: `sum by (x) (...)`
_KEYWORDS |= {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
_KEYWORDS |= {"bottomk", "topk", "quantile"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_MATCH_OPS = {"=", "!=", "=~", "!~"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    at = 0
    while at < len(expr):
        match = _TOKEN.match(expr, at)
        if match is None:
            raise ValueError(f"cannot read {expr[at:]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            found.append((kind, match.group()))
        at = match.end()
    return found


def read(expr: str) -> Usage:
    """The selectors and grouping labels of one PromQL expression."""
    tokens = _tokens(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0

    def at(j: int) -> str:
        return tokens[j][1] if j < len(tokens) else ""

    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "op" and text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        if kind != "ident" or text in _KEYWORDS:
            i += 1
            continue
        if text in _GROUPING:
            if at(i + 1) != "(":  # group_left without labels
                i += 1
                continue
            i += 2
            while at(i) != ")":
                if tokens[i][0] == "ident":
                    grouping.add(tokens[i][1])
                elif at(i) != ",":
                    raise ValueError(f"unexpected {at(i)!r} in a label list of {expr!r}")
                i += 1
            i += 1
            continue
        if at(i + 1) == "(":  # a function or an aggregation
            i += 1
            continue
        matchers: list[Matcher] = []
        i += 1
        if at(i) == "{":
            i += 1
            while at(i) != "}":
                if at(i) == ",":
                    i += 1
                    continue
                label, op, value = tokens[i : i + 3]
                if label[0] != "ident" or op[1] not in _MATCH_OPS or value[0] != "string":
                    raise ValueError(f"unexpected matcher {tokens[i : i + 3]} in {expr!r}")
                matchers.append(Matcher(label[1], op[1], value[1][1:-1]))
                i += 3
            i += 1
        selectors.append(Selector(text, tuple(matchers)))
    return Usage(tuple(selectors), frozenset(grouping))
