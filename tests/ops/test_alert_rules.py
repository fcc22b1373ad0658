"""deploy/observability/alerts.yml passes promtool's checks and its own unit tests
(alerts_test.yml), and those unit tests would notice an alert that never fires.

promtool comes from Debian's prometheus package (`bash deploy/local/tools.sh promtool`); without
it these tests fail, never skip.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.ops.observability import ALERTS, ALERTS_TEST, alert_rules, promtool

SEVERITIES = {"warning", "critical"}


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


def test_the_rule_unit_tests_pass() -> None:
    tested = promtool("test", "rules", str(ALERTS_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it must not (exp_alerts: [])."""
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))["tests"]
        for case in test["alert_rule_test"]
    ]
    names = {rule["alert"] for rule in alert_rules()}
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert names - fires == set(), "never shown firing"
    assert names - quiet == set(), "never shown quiet"


def test_the_unit_tests_notice_an_alert_that_never_fires(tmp_path: Path) -> None:
    """The same unit tests against rules whose expressions select nothing: every alert's
    'fires' case must fail, so none of them passes by accident."""
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["expr"] = "vector(0) > 1"
    (tmp_path / ALERTS.name).write_text(yaml.safe_dump(document), encoding="utf-8")
    (tmp_path / ALERTS_TEST.name).write_text(ALERTS_TEST.read_text(encoding="utf-8"))
    tested = promtool("test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert tested.returncode != 0
    failed = tested.stdout + tested.stderr
    assert [r["alert"] for r in alert_rules() if f"alertname: {r['alert']}," not in failed] == []


def test_every_alert_waits_names_its_severity_and_says_where_to_look() -> None:
    for rule in alert_rules():
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        assert len(annotations["description"].split()) >= 20, rule["alert"]
