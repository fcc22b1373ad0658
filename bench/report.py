"""Printing figures next to their same-run baselines (absolute numbers drift on shared
machines; the ratio is what to compare between runs)."""

from __future__ import annotations

from dataclasses import dataclass

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
