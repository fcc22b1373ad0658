"""Printing figures next to their same-run baselines (absolute numbers drift on shared
machines; the ratio is what to compare between runs).

With `BENCH_RESULTS` set, each figure is also appended to that JSON-lines file: `python -m bench`
runs every module in a process of its own and reads them back to guard against regressions."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Figure:
    what: str
    value: float
    unit: str
    baseline_what: str
    baseline_value: float
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        if self.baseline_value == 0:
            return float("nan")
        return self.value / self.baseline_value


def print_figures(title: str, figures: list[Figure]) -> None:
    table = Table(title=title)
    for col in ("measured", "value", "baseline (same run)", "baseline value", "ratio"):
        table.add_column(col, justify="right" if "value" in col or col == "ratio" else "left")
    for f in figures:
        table.add_row(
            f.what,
            f"{f.value:,.1f} {f.unit}",
            f.baseline_what,
            f"{f.baseline_value:,.1f} {f.unit}",
            f"{f.ratio:.2f}x",
        )
    Console(width=160).print(table)
    record(title, figures)


def record(title: str, figures: list[Figure]) -> None:
    path = os.environ.get("BENCH_RESULTS")
    if not path:
        return
    module = Path(sys.argv[0]).stem  # `python -m bench.bench_relay` runs .../bench_relay.py
    with open(path, "a") as out:
        for f in figures:
            line = {
                "module": module,
                "title": title,
                "what": f.what,
                "unit": f.unit,
                "value": _finite(f.value),
                "baseline_what": f.baseline_what,
                "baseline_value": _finite(f.baseline_value),
                "ratio": _finite(f.ratio),
                "higher_is_better": f.higher_is_better,
            }
            out.write(json.dumps(line) + "\n")


def _finite(x: float) -> float | None:
    # NaN (no sample, a zero baseline) as null: the file stays strict JSON
    return x if math.isfinite(x) else None
