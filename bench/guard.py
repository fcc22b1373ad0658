"""The regression guard behind `make bench`: this run's ratios against `bench/baseline.json`.

A ratio (ours / a same-run baseline) is what survives a move between machines, so that is what
is guarded; absolute figures are not. A figure is named by its title, what and baseline_what with
every number masked: several labels carry the run's own timings and counts ("in 3.21s", "45 tx"),
and two figures often share a title and a what and differ only in what they are compared with.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "REGRESSED", "missing", "new"]

# a number standing on its own; "p99" and "linger_ms=5" are names, not measurements
_NUMBER = re.compile(r"(?<![A-Za-z_=\d])\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class Entry:
    module: str
    ratio: float
    higher_is_better: bool


@dataclass(frozen=True)
class Baseline:
    figures: dict[str, Entry]
    measured_at: str


@dataclass(frozen=True)
class Row:
    figure: str
    baseline: float | None
    measured: float | None
    limit: float | None  # floor when higher is better, ceiling when lower is better
    higher_is_better: bool
    status: Status

    @property
    def failed(self) -> bool:
        return self.status in ("REGRESSED", "missing")


def figure_key(title: str, what: str, baseline_what: str) -> str:
    return " / ".join(
        _NUMBER.sub("#", " ".join(part.split())) for part in (title, f"{what} vs {baseline_what}")
    )


def load_results(path: Path) -> dict[str, Entry]:
    """The JSON lines `bench.report.print_figures` appended; a repeated name is a labelling bug."""
    found: dict[str, Entry] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        key = figure_key(r["title"], r["what"], r["baseline_what"])
        if key in found:
            raise ValueError(f"two figures are both named {key!r}: give them distinct labels")
        ratio = math.nan if r["ratio"] is None else float(r["ratio"])
        found[key] = Entry(r["module"], ratio, bool(r["higher_is_better"]))
    return found


def load_baseline(path: Path) -> Baseline | None:
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    figures = {k: Entry(**v) for k, v in raw["figures"].items()}
    return Baseline(figures, raw.get("measured_at", ""))


def compare(
    measured: Mapping[str, Entry],
    baseline: Mapping[str, Entry],
    tolerance: float,
    selected: set[str] | None = None,
) -> list[Row]:
    """One row per baseline figure of a selected module (all when `selected` is None), then one
    per figure measured but not in the baseline ("new", which never fails)."""
    rows = []
    for key, base in sorted(baseline.items()):
        if selected is not None and base.module not in selected:
            continue
        limit = base.ratio * tolerance if base.higher_is_better else base.ratio / tolerance
        got = measured.get(key)
        if got is None:
            status: Status = "missing"
        else:
            # a NaN ratio (a zero baseline value) compares False either way: it cannot pass
            held = got.ratio >= limit if base.higher_is_better else got.ratio <= limit
            status = "ok" if held else "REGRESSED"
        ratio = None if got is None else got.ratio
        rows.append(Row(key, base.ratio, ratio, limit, base.higher_is_better, status))
    for key, got in sorted(measured.items()):
        if key not in baseline:
            rows.append(Row(key, None, got.ratio, None, got.higher_is_better, "new"))
    return rows


def updated(
    old: Mapping[str, Entry], measured: Mapping[str, Entry], selected: set[str]
) -> dict[str, Entry]:
    """The new baseline: this run's figures, and the old ones of modules that did not run."""
    kept = {k: e for k, e in old.items() if e.module not in selected}
    return kept | {k: e for k, e in measured.items() if math.isfinite(e.ratio)}


def write_baseline(path: Path, figures: Mapping[str, Entry], measured_at: str) -> None:
    data: dict[str, Any] = {
        "measured_at": measured_at,
        "figures": {
            k: {
                "module": e.module,
                "ratio": round(e.ratio, 3),
                "higher_is_better": e.higher_is_better,
            }
            for k, e in figures.items()
        },
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
