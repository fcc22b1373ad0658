"""`python -m shared.relay --dsn … --bootstrap …`: a standalone relay process.

Services run their relay in-process (bootstrap.py); this is for operators (draining a database
whose service is down) and for the fault-injection tests, which SIGKILL it mid-batch.
"""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import typer

from shared.observability.logging import configure_logging
from shared.relay.relay import OutboxRelay

cli = typer.Typer(add_completion=False, help="Publish a database's outbox to Kafka.")


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
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(relay.stop()))
    try:
        await relay.run()
    finally:
        await pool.close()


@cli.command()
def main(
    dsn: str = typer.Option(..., envvar="RELAY_DATABASE_URL", help="PostgreSQL DSN"),
    bootstrap: str = typer.Option(
        "127.0.0.1:9092", envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka host:port list"
    ),
    name: str = typer.Option("relay", help="metrics label and Kafka client id"),
    batch_size: int = typer.Option(500, min=1, max=10_000),
    poll_interval: float = typer.Option(1.0, min=0.05, help="seconds between safety-net polls"),
    log_level: str = typer.Option("INFO"),
) -> None:
    """Run until SIGTERM/SIGINT; stands by while another relay of the database is active."""
    configure_logging(service=f"relay:{name}", level=log_level)
    asyncio.run(_serve(dsn, bootstrap, name, batch_size, poll_interval))


if __name__ == "__main__":
    cli()
