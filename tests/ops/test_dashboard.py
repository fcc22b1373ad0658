"""deploy/observability/grafana-dashboard.json: valid JSON Grafana can import anywhere (the
Prometheus data source is a variable, never a fixed uid), every panel queries something, every
query is PromQL that promtool accepts, and every signal an alert watches has a panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.ops.observability import (
    alert_rules,
    as_prometheus_sees_it,
    dashboard,
    dashboard_expressions,
    promtool,
    read,
)

TEMPLATED = {"type": "prometheus", "uid": "${datasource}"}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [inner for p in board["panels"] for inner in [p, *p.get("panels", [])]]


def test_the_data_source_is_a_variable_for_prometheus() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == TEMPLATED, variable["name"]


def test_every_panel_has_a_query_on_the_templated_data_source() -> None:
    board = dashboard()
    shown = [p for p in panels(board) if p["type"] != "row"]
    assert len(shown) >= 10
    for panel in shown:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == TEMPLATED, panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == TEMPLATED, panel["title"]
    refs = [(p["id"], t["refId"]) for p in shown for t in p["targets"]]
    assert len(refs) == len(set(refs)), "a refId repeats within a panel"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard()):
        box = panel["gridPos"]
        assert 0 <= box["x"] < box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[x, y]}"
                cells[x, y] = panel["title"]


def test_every_query_is_promql_promtool_accepts(tmp_path: Path) -> None:
    """Each query becomes a recording rule, Grafana's variables filled in as it would."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": as_prometheus_sees_it(expr)}
        for i, (_, expr) in enumerate(dashboard_expressions(dashboard()))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_every_metric_an_alert_watches_has_a_panel() -> None:
    shown = {
        s.metric.removesuffix("_bucket")
        for _, expr in dashboard_expressions(dashboard())
        for s in read(expr).selectors
    }
    alerted = {s.metric for rule in alert_rules() for s in read(rule["expr"]).selectors}
    assert alerted - shown == set()
    assert "leadline_handler_seconds" in shown  # latency, the first thing a lag alert asks for
