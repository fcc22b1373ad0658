"""`python -m shared.relay --dsn … --bootstrap …`: a standalone relay process, and
`python -m shared.relay parked list|retry|drop --dsn …` for the rows Kafka refused for good.

Services run their relay in-process (bootstrap.py); this is for operators (draining a database
whose service is down, settling parked rows) and for the fault-injection tests, which SIGKILL it
mid-batch. Both expect the schema the service installs at start (parking needs its columns).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import typer

from shared.kafka.admin import security_from_env
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing
from shared.relay.parking import drop_parked, parked_rows, retry_parked
from shared.relay.relay import OutboxRelay
from shared.runtime import configured

T = TypeVar("T")

cli = typer.Typer(
    add_completion=False,
    help="Publish a database's outbox to Kafka (no command), or settle its parked rows.",
)
parked = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Outbox rows Kafka refused for good: each holds back the later rows of its topic and key.",
)
cli.add_typer(parked, name="parked")

DSN = typer.Option(..., envvar="RELAY_DATABASE_URL", help="PostgreSQL DSN")
IDS = typer.Option(None, "--id", help="a parked row's id (repeatable)")


async def _serve(
    dsn: str, bootstrap: str, name: str, batch_size: int, poll_interval: float
) -> None:
    # the application name lets an operator (or a test) find the relay's backends
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=4, server_settings={"application_name": f"relay:{name}"}
    )
    relay = OutboxRelay(
        pool=pool,
        bootstrap_servers=bootstrap,
        name=name,
        batch_size=batch_size,
        poll_interval=poll_interval,
        # KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* as the service owning the database reads them
        security=security_from_env(),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(relay.stop()))
    try:
        await relay.run()
    finally:
        await pool.close()


@cli.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    dsn: str | None = typer.Option(None, envvar="RELAY_DATABASE_URL", help="PostgreSQL DSN"),
    bootstrap: str = typer.Option(
        "127.0.0.1:9092", envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka host:port list"
    ),
    name: str = typer.Option("relay", help="metrics label and Kafka client id"),
    batch_size: int = typer.Option(500, min=1, max=10_000),
    poll_interval: float = typer.Option(1.0, min=0.05, help="seconds between safety-net polls"),
    log_level: str = typer.Option("INFO"),
) -> None:
    """Without a command: run a relay until SIGTERM/SIGINT; it stands by while another relay
    of the database is active."""
    if ctx.invoked_subcommand is not None:
        return
    if dsn is None:
        raise typer.BadParameter("required to run a relay", param_hint="--dsn")
    configure_logging(service=f"relay:{name}", level=log_level)
    # its sends continue the traces that wrote the rows (spans exported at exit)
    configured("relay", lambda: configure_tracing(f"relay:{name}"))
    asyncio.run(_serve(dsn, bootstrap, name, batch_size, poll_interval))


def _with_pool(dsn: str, use: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    async def run() -> T:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            return await use(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
        typer.echo(f"{exc}: start the service once, it installs the outbox schema", err=True)
        raise typer.Exit(1) from exc


@parked.command("list")
def list_cmd(dsn: str = DSN) -> None:
    """Every parked row: id, topic, key, size, rows it holds back, when and why it was parked."""
    rows = _with_pool(dsn, parked_rows)
    if not rows:
        typer.echo("no parked rows")
        return
    typer.echo("id\ttopic\tkey\tbytes\theld\tparked_at\treason")
    for r in rows:
        fields = (r["id"], r["topic"], r["key"], r["bytes"], r["held"], r["parked_at"])
        typer.echo("\t".join(map(str, fields)) + f"\t{r['parked_reason']}")


@parked.command("retry")
def retry_cmd(
    dsn: str = DSN,
    ids: list[int] | None = IDS,
    all_rows: bool = typer.Option(False, "--all", help="every parked row"),
) -> None:
    """Put parked rows back in line once the cause is fixed: the relay sends each before the
    rows it held (refused again, it is parked again)."""
    if bool(ids) == all_rows:
        raise typer.BadParameter("give either --id (one or more) or --all")
    released = _with_pool(dsn, lambda pool: retry_parked(pool, None if all_rows else ids))
    _settled("retried", ids, released)


@parked.command("drop")
def drop_cmd(dsn: str = DSN, ids: list[int] | None = IDS) -> None:
    """Give parked rows up: never sent, kept for inspection until housekeeping prunes them like
    sent rows; the rows they held go out."""
    if not ids:
        raise typer.BadParameter("give --id (one or more)")
    _settled("dropped", ids, _with_pool(dsn, lambda pool: drop_parked(pool, ids)))


def _settled(done: str, asked: list[int] | None, settled: list[int]) -> None:
    typer.echo(f"{done}: {', '.join(map(str, settled)) or 'none'}")
    missing = sorted(set(asked or ()) - set(settled))
    if missing:
        typer.echo(f"not parked: {', '.join(map(str, missing))}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    cli()
