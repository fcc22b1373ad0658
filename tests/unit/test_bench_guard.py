"""The regression guard of `make bench` (bench/guard.py): ratios against the committed baseline."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from bench.guard import (
    Entry,
    compare,
    figure_key,
    load_baseline,
    load_results,
    updated,
    write_baseline,
)
from bench.report import Figure, print_figures

HTTP = "HTTP: 2000 requests / POST /orders vs GET /ping"
P99 = "HTTP: 2000 requests / POST /orders p99 vs GET /ping p99"


def statuses(
    measured: dict[str, Entry], baseline: dict[str, Entry], selected: set[str] | None = None
) -> list[str]:
    return [r.status for r in compare(measured, baseline, 0.8, selected)]


@pytest.mark.parametrize("higher_is_better", [True, False], ids=["higher", "lower"])
@pytest.mark.parametrize(("share", "status"), [(0.85, "ok"), (0.8, "ok"), (0.75, "REGRESSED")])
def test_a_ratio_may_worsen_to_the_tolerance(
    higher_is_better: bool, share: float, status: str
) -> None:
    # "share" is how good the run is next to the baseline: for a latency ratio, 2.0 -> 2.0 / share
    got = 2.0 * share if higher_is_better else 2.0 / share
    baseline = {P99: Entry("bench_http", 2.0, higher_is_better)}
    assert statuses({P99: Entry("bench_http", got, higher_is_better)}, baseline) == [status]


def test_lower_is_better_flips_the_direction() -> None:
    better_latency, worse_latency = Entry("bench_http", 1.0, False), Entry("bench_http", 3.0, False)
    baseline = {P99: Entry("bench_http", 2.0, False)}
    assert statuses({P99: better_latency}, baseline) == ["ok"]
    assert statuses({P99: worse_latency}, baseline) == ["REGRESSED"]
    baseline = {P99: Entry("bench_http", 2.0, True)}
    assert statuses({P99: Entry("bench_http", 1.0, True)}, baseline) == ["REGRESSED"]
    assert statuses({P99: Entry("bench_http", 3.0, True)}, baseline) == ["ok"]


def test_a_nan_ratio_never_passes() -> None:
    baseline = {HTTP: Entry("bench_http", 0.5, True)}
    assert statuses({HTTP: Entry("bench_http", math.nan, True)}, baseline) == ["REGRESSED"]


def test_a_missing_figure_fails_unless_its_module_was_not_selected() -> None:
    baseline = {HTTP: Entry("bench_http", 0.5, True), "relay": Entry("bench_relay", 0.9, True)}
    measured = {HTTP: Entry("bench_http", 0.5, True)}
    rows = compare(measured, baseline, 0.8)
    assert [(r.figure, r.status, r.failed) for r in rows] == [
        (HTTP, "ok", False),
        ("relay", "missing", True),
    ]
    assert statuses(measured, baseline, selected={"bench_http"}) == ["ok"]
    assert statuses({}, baseline, selected={"bench_http"}) == ["missing"]


def test_a_figure_not_in_the_baseline_is_new_and_does_not_fail() -> None:
    rows = compare({HTTP: Entry("bench_http", 0.5, True)}, {}, 0.8)
    assert [(r.status, r.failed) for r in rows] == [("new", False)]


def test_labels_are_matched_with_their_numbers_masked() -> None:
    a = figure_key("saga: 500 orders", "  round OrderPlaced (0.53s)", "bare faust, 1,500 in 1.2s")
    b = figure_key("saga: 500 orders", "round OrderPlaced (0.61s)", "bare faust, 1,500 in 1.4s")
    assert a == b == "saga: # orders / round OrderPlaced (#s) vs bare faust, # in #s"
    assert figure_key("t", "POST /orders p50", "x") != figure_key("t", "POST /orders p99", "x")


def results_file(tmp_path: Path, *lines: dict[str, object]) -> Path:
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def line(what: str, ratio: float | None, *, module: str = "bench_relay") -> dict[str, object]:
    return {
        "module": module,
        "title": "outbox relay, 20,000 messages",
        "what": what,
        "unit": "msg/s",
        "value": 1.0,
        "baseline_what": "raw aiokafka producer",
        "baseline_value": 2.0,
        "ratio": ratio,
        "higher_is_better": True,
    }


def test_update_baseline_round_trips(tmp_path: Path) -> None:
    measured = load_results(results_file(tmp_path, line("relay", 0.51234), line("other", None)))
    path = tmp_path / "baseline.json"
    write_baseline(path, updated({}, measured, {"bench_relay"}), "2026-12-02 on vm")

    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    baseline = load_baseline(path)
    assert baseline is not None
    assert baseline.measured_at == "2026-12-02 on vm"
    # rounded to 3 decimals; a NaN ratio guards nothing and is left out
    assert baseline.figures == {
        "outbox relay, # messages / relay vs raw aiokafka producer": Entry(
            "bench_relay", 0.512, True
        )
    }
    assert [r.status for r in compare(measured, baseline.figures, 0.8)] == ["ok", "new"]


def test_updating_some_modules_keeps_the_others(tmp_path: Path) -> None:
    old = {"a": Entry("bench_http", 0.5, True), "b": Entry("bench_relay", 0.9, True)}
    new = {"c": Entry("bench_relay", 0.7, True)}
    assert updated(old, new, {"bench_relay"}) == {"a": old["a"], "c": new["c"]}


def test_no_baseline_file_is_none(tmp_path: Path) -> None:
    assert load_baseline(tmp_path / "baseline.json") is None


def test_two_figures_with_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both named"):
        load_results(results_file(tmp_path, line("relay", 0.5), line("relay", 0.6)))


def test_print_figures_records_what_the_guard_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = [Figure("ours, 1 event", 50.0, "events/s", "raw, 4 tasks", 100.0)]
    monkeypatch.setattr(sys, "argv", ["/repo/bench/bench_consumer.py"])
    monkeypatch.delenv("BENCH_RESULTS", raising=False)
    print_figures("consumer", figures)
    assert list(tmp_path.iterdir()) == []

    path = tmp_path / "results.jsonl"
    monkeypatch.setenv("BENCH_RESULTS", str(path))
    print_figures("consumer", figures)
    print_figures("consumer, again", [Figure("x", 1.0, "ms", "y", 0.0, higher_is_better=False)])
    found = load_results(path)
    assert found["consumer / ours, # event vs raw, # tasks"] == Entry("bench_consumer", 0.5, True)
    # a zero baseline value: the ratio is written as null and read back as NaN
    assert math.isnan(found["consumer, again / x vs y"].ratio)
    assert len(found) == 2
