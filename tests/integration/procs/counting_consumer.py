"""A consumer process for the crash test: applies OrderConfirmed events by counting them.

Two records per event, so that a lost event and a double application both show in PostgreSQL:
`applied` (primary key event_id; a repeat bumps `times` instead of failing) and the single row
of `counter`, incremented once per handler run that committed.

    python -m tests.integration.procs.counting_consumer --bootstrap .. --dsn .. --topic .. --name ..

SIGTERM stops it gracefully (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import asyncpg

from schemas.checkout.v1 import OrderConfirmed
from shared.envelope import Envelope
from shared.kafka.consumer import ConsumerRunner, ConsumerSettings, Subscription
from shared.observability.logging import configure_logging
from shared.postgres.uow import PostgresUnitOfWork

DDL = """
CREATE TABLE IF NOT EXISTS applied (
    event_id uuid PRIMARY KEY,
    key      text NOT NULL,
    times    integer NOT NULL DEFAULT 1,
    seq      bigint GENERATED ALWAYS AS IDENTITY
);
CREATE TABLE IF NOT EXISTS counter (id integer PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counter VALUES (1, 0) ON CONFLICT DO NOTHING;
"""


async def count(envelope: Envelope, message: OrderConfirmed, uow: PostgresUnitOfWork) -> None:
    await uow.connection.execute(
        "INSERT INTO applied (event_id, key) VALUES ($1, $2)"
        " ON CONFLICT (event_id) DO UPDATE SET times = applied.times + 1",
        envelope.event_id,
        envelope.key,
    )
    await uow.connection.execute("UPDATE counter SET n = n + 1 WHERE id = 1")


def application_name(name: str) -> str:
    """What the process's connections show in pg_stat_activity (tests find it parked there)."""
    return f"consumer:{name}"


async def main(args: argparse.Namespace) -> None:
    configure_logging("counting-consumer", "INFO")
    pool = await asyncpg.create_pool(
        args.dsn,
        min_size=1,
        max_size=8,
        server_settings={"application_name": application_name(args.name)},
    )
    runner = ConsumerRunner(
        name=args.name,
        bootstrap_servers=args.bootstrap,
        subscriptions=[Subscription(args.topic, OrderConfirmed, count)],
        uow_factory=lambda: PostgresUnitOfWork(pool),
        settings=ConsumerSettings(
            max_poll_records=args.max_poll_records,
            transaction_batch=args.transaction_batch,
            # a restart takes the killed instance's partitions back without waiting out its session
            group_instance_id=f"{args.name}-0",
        ),
    )
    await runner.start()
    stopping: list[asyncio.Task[None]] = []
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, lambda: stopping.append(asyncio.create_task(runner.stop()))
    )
    try:
        await runner.run()
    finally:
        if stopping:
            await stopping[0]
        else:
            await runner.stop()
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--max-poll-records", type=int, default=200)
    parser.add_argument("--transaction-batch", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
