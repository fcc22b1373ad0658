"""`python -m services.projection`: the projection service on uvicorn;
`python -m services.projection rebuild VIEW`: rebuild one view while the service runs."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from services.projection.bootstrap import create_app
from services.projection.consumers import VIEWS
from services.projection.rebuild import RebuildBusyError, rebuild
from services.projection.settings import ProjectionSettings
from services.projection.store import SCHEMA
from shared.auth import AuthSettings
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing
from shared.postgres import create_pool, install_schema
from shared.runtime import configured, serve

cli = typer.Typer(add_completion=False, no_args_is_help=False)


@cli.callback(invoke_without_command=True)
def main(context: typer.Context) -> None:
    """Without a command: serve the read side's API and keep every view current."""
    if context.invoked_subcommand is not None:
        return
    settings = configured("projection", ProjectionSettings)
    configure_logging(settings.service_name, settings.log_level)
    configured("projection", lambda: configure_tracing(settings.service_name))
    app = configured("projection", lambda: create_app(settings, AuthSettings()))
    serve(app, host=settings.http_host, port=settings.http_port)


@cli.command("rebuild")
def rebuild_command(
    view: Annotated[str, typer.Argument(help=f"one of: {', '.join(VIEWS)}")],
) -> None:
    """Replay VIEW from the beginning of its topics into a shadow table set, then swap it in;
    the service keeps serving and consuming meanwhile."""
    if view not in VIEWS:
        typer.echo(f"rebuild: no view {view!r}; views: {', '.join(VIEWS)}", err=True)
        raise typer.Exit(2)
    settings = configured("projection", ProjectionSettings)
    configure_logging(settings.service_name, "WARNING")
    columns = (
        TextColumn(f"rebuilding {view}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )

    async def go() -> None:
        pool = await create_pool(settings.database_url, max_size=4)
        try:
            await install_schema(pool, SCHEMA)
            with Progress(*columns, transient=False) as bar:
                task = bar.add_task(view, total=None)
                result = await rebuild(
                    VIEWS[view],
                    pool,
                    bootstrap_servers=settings.kafka_bootstrap_servers,
                    security=settings.kafka_security,
                    topic=settings.topic,
                    consumer_name=VIEWS[view].consumer_name(settings.consumer_group),
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        finally:
            await pool.close()
        typer.echo(
            f"{view}: {result.records} records replayed ({result.applied} applied,"
            f" {result.skipped} skipped) in {result.seconds:.1f}s; swapped in"
        )

    try:
        asyncio.run(go())
    except RebuildBusyError as exc:
        typer.echo(f"rebuild: {exc}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    cli()
