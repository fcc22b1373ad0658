"""`make bench`: run every benchmark module in turn, each in its own process, then hold this run's
ratios against `bench/baseline.json` and exit 1 on a regression or on a module that failed."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench import guard

HERE = Path(__file__).parent
BASELINE = HERE / "baseline.json"
RESULTS = HERE.parent / ".run" / "bench-results.jsonl"

cli = typer.Typer(add_completion=False)


def run(modules: list[str]) -> int:
    """Run the modules; how many failed. Each appends its figures to RESULTS."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("")
    env = {**os.environ, "BENCH_RESULTS": str(RESULTS)}
    failed = 0
    for name in modules:
        print(f"\n=== bench.{name}", flush=True)
        done = subprocess.run([sys.executable, "-m", f"bench.{name}"], env=env, check=False)
        failed += done.returncode != 0
    return failed


def print_rows(rows: list[guard.Row], tolerance: float, measured_at: str) -> None:
    table = Table(
        title=f"ratios against bench/baseline.json ({measured_at}), tolerance {tolerance}"
    )
    for col in ("figure", "baseline ratio", "measured ratio", "floor / ceiling", "status"):
        table.add_column(col, justify="left" if col in ("figure", "status") else "right")
    for r in rows:
        bound = "" if r.limit is None else f"{'>=' if r.higher_is_better else '<='} {r.limit:.3f}x"
        table.add_row(
            r.figure,
            "" if r.baseline is None else f"{r.baseline:.3f}x",
            "" if r.measured is None else f"{r.measured:.3f}x",
            bound,
            f"[bold red]{r.status}[/]" if r.failed else r.status,
        )
    Console(width=200).print(table)


@cli.command()
def main(
    only: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="run only bench_NAME (repeatable); the others' figures may be absent",
        ),
    ] = None,
    update_baseline: Annotated[
        bool, typer.Option(help="write bench/baseline.json from this run instead of comparing")
    ] = False,
    tolerance: Annotated[
        float,
        typer.Option(min=0.01, max=1.0, help="a ratio may fall to this share of its baseline"),
    ] = 0.8,
) -> None:
    # the whole-system run is long and has a target of its own (`make bench-e2e`)
    modules = sorted(p.stem for p in HERE.glob("bench_*.py") if p.stem != "bench_e2e")
    if only:
        wanted = {f"bench_{n.removeprefix('bench_')}" for n in only}
        if unknown := wanted - set(modules):
            raise typer.BadParameter(
                f"no {', '.join(sorted(unknown))} (bench_e2e: `make bench-e2e`); one of {modules}",
                param_hint="--only",
            )
        modules = [m for m in modules if m in wanted]
    failed = run(modules)
    measured = guard.load_results(RESULTS)
    baseline = guard.load_baseline(BASELINE)
    selected = set(modules)

    if update_baseline:
        if failed:
            print(f"{failed} module(s) failed: bench/baseline.json left as it was")
            raise typer.Exit(1)
        note = f"{datetime.date.today().isoformat()} on {platform.node()}"
        old = {} if baseline is None else baseline.figures
        guard.write_baseline(BASELINE, guard.updated(old, measured, selected), note)
        print(f"wrote {len(measured)} figures to bench/baseline.json ({note})")
        return

    if baseline is None:
        print("no bench/baseline.json: run `python -m bench --update-baseline` on a quiet machine")
        raise typer.Exit(1 if failed else 0)
    # with --only, the figures of modules that did not run are not missing
    rows = guard.compare(measured, baseline.figures, tolerance, selected if only else None)
    print_rows(rows, tolerance, baseline.measured_at)
    regressed = sum(r.failed for r in rows)
    if failed or regressed:
        print(f"{failed} module(s) failed, {regressed} figure(s) regressed or missing")
        raise typer.Exit(1)


if __name__ == "__main__":
    cli()
