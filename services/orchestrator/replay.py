"""The saga replay check: feed recorded saga histories through the current transition function
and report every history whose commands would now differ (the safety net before changing saga
code, like Temporal's replay tests).

A saga records, for each message it applied, the message as received and the commands it sent.
Replaying means applying the same messages, at the same recorded times, to a fresh saga: code
that still decides alike sends the same commands (type, id, payload) at every step.

    python -m services.orchestrator.replay --dsn postgresql://…/orchestrator
    python -m services.orchestrator.replay --file sagas.jsonl     # one saga JSON per line
    python -m services.orchestrator.replay export --dsn … > sagas.jsonl
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from schemas.registry import REGISTRY
from services.orchestrator.saga import Command, Incoming, Saga, Timeouts, apply
from services.orchestrator.store import all_sagas


@dataclass(frozen=True)
class Divergence:
    order_id: str
    step: int  # index in the history
    message_type: str
    recorded: list[tuple[str, str]]  # (type, event id) of the commands sent then
    replayed: list[tuple[str, str]]  # … and now
    detail: str


def _summary(commands: Iterable[Command]) -> list[tuple[str, str]]:
    return [(c.type, str(c.event_id)) for c in commands]


def replay(saga: Saga, timeouts: Timeouts) -> Divergence | None:
    """The first step of `saga`'s history whose commands differ when replayed, else None."""
    state: Saga | None = None
    for index, step in enumerate(saga.history):
        if step.note.startswith("failed"):
            break  # the agent gave up on this message: nothing was decided
        message = REGISTRY.decode(step.type, step.version, step.payload)
        state, commands = apply(state, Incoming(step.message_id, message, step.at), timeouts)
        recorded = list(step.commands)
        if [c.model_dump() for c in commands] != [c.model_dump() for c in recorded]:
            detail = (
                "different commands"
                if _summary(commands) != _summary(recorded)
                else ("same commands, different payloads")
            )
            return Divergence(
                saga.order_id, index, step.type, _summary(recorded), _summary(commands), detail
            )
        if state is not None and state.status != step.status:
            return Divergence(
                saga.order_id,
                index,
                step.type,
                _summary(recorded),
                _summary(commands),
                f"status {step.status.value} recorded, {state.status.value} now",
            )
    return None


def check(sagas: Iterable[Saga], timeouts: Timeouts) -> tuple[int, list[Divergence]]:
    """(sagas checked, divergences)."""
    checked, found = 0, []
    for saga in sagas:
        checked += 1
        if (divergence := replay(saga, timeouts)) is not None:
            found.append(divergence)
    return checked, found


def read_file(path: Path) -> list[Saga]:
    return [Saga.model_validate_json(line) for line in path.read_text().splitlines() if line]


cli = typer.Typer(add_completion=False, help="Replay recorded sagas through the current code.")
Dsn = Annotated[str | None, typer.Option(envvar="ORCHESTRATOR_DATABASE_URL")]


@cli.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    dsn: Dsn = None,
    file: Annotated[Path | None, typer.Option(help="saga JSON lines (from `export`)")] = None,
) -> None:
    """Report every saga whose recorded commands the current code would not send again."""
    if ctx.invoked_subcommand is not None:
        return
    if (dsn is None) == (file is None):
        raise typer.BadParameter("give exactly one of --dsn or --file")
    sagas = read_file(file) if file is not None else asyncio.run(all_sagas(str(dsn)))
    checked, found = check(sagas, Timeouts())
    for d in found:
        typer.echo(
            f"{d.order_id} step {d.step} ({d.message_type}): {d.detail};"
            f" recorded {d.recorded}, now {d.replayed}"
        )
    typer.echo(f"{checked} sagas replayed, {len(found)} differ")
    if found:
        raise typer.Exit(1)


@cli.command()
def export(dsn: Dsn = None) -> None:
    """Print every saga as one JSON line (the input of `--file`)."""
    if dsn is None:
        raise typer.BadParameter("--dsn (or ORCHESTRATOR_DATABASE_URL) is required")
    for saga in asyncio.run(all_sagas(dsn)):
        sys.stdout.write(saga.model_dump_json() + "\n")


if __name__ == "__main__":
    cli()
