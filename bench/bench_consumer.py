"""Idempotent consumer events/s, next to a raw aiokafka consumer reading the same messages.

N OrderConfirmed envelopes (~330 bytes) are produced once to a fresh topic of PARTITIONS
partitions. Then, in turn, on the same records:

- raw aiokafka: an AIOKafkaConsumer in its own group (subscribe, max_poll_records=500) reads all
  N; no decoding, no database. The transport's ceiling.
- ours, one transaction per event: `ConsumerRunner` with `transaction_batch=1`. Per event:
  envelope and payload decoded and validated, a transaction with the inbox claim and the
  handler's one-row INSERT, commit; offsets committed per polled batch. Partitions in parallel.
- ours, batched: the same with `transaction_batch=BATCH` (records of one partition per
  transaction; the guarantee stays per event, see the consumer tests).
- raw asyncpg: PARTITIONS tasks together making N one-row INSERT transactions (explicit
  BEGIN/COMMIT, like ours): the database's cost alone, next to ours-per-event.

Kafka contenders are timed from the first record in hand to the N-th settled, so the group
join is excluded for all. Each contender gets its own consumer group and empty table on a fresh
database on the POSTGRES_DSN server (dropped afterwards). One round each; the machines are
shared, so compare ratios, not absolute numbers.
Run: `python -m bench.bench_consumer` (BENCH_CONSUMER_EVENTS to change N).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from bench.report import Figure, print_figures
from schemas.checkout.v1 import OrderConfirmed
from shared.envelope import Envelope
from shared.kafka.consumer import ConsumerRunner, ConsumerSettings, Subscription
from shared.kafka.dead_letters import dead_letter_topic
from shared.postgres import install_schema
from shared.postgres.uow import PostgresUnitOfWork

EVENTS = int(os.environ.get("BENCH_CONSUMER_EVENTS", "20000"))
PARTITIONS = 4
BATCH = 100
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
POSTGRES = os.environ.get("POSTGRES_DSN", "postgresql://leadline:leadline@127.0.0.1:5433/postgres")
DDL = "CREATE TABLE IF NOT EXISTS bench_applied (event_id uuid PRIMARY KEY);"


async def produce(topic: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = []
        for i in range(EVENTS):
            order = f"order-{i % 1000:06d}"
            env = Envelope.wrap(OrderConfirmed(order_id=order), key=order, producer="bench")
            futures.append(
                await producer.send(
                    topic, env.to_bytes(), key=order.encode(), headers=env.headers()
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_consumer(topic: str) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=KAFKA,
        group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=500,
    )
    await consumer.start()
    try:
        seen, started = 0, 0.0
        while seen < EVENTS:
            batch = await consumer.getmany(timeout_ms=1000)
            if batch and not started:
                started = time.perf_counter()
            seen += sum(len(records) for records in batch.values())
        return EVENTS / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def ours(topic: str, pool: asyncpg.Pool, transaction_batch: int) -> float:
    await pool.execute("TRUNCATE bench_applied, inbox")
    started: list[float] = []

    async def apply(envelope: Envelope, message: Any, uow: PostgresUnitOfWork) -> None:
        if not started:
            started.append(time.perf_counter())
        await uow.connection.execute(
            "INSERT INTO bench_applied (event_id) VALUES ($1)", envelope.event_id
        )

    name = f"bench-ours-{uuid.uuid4().hex[:8]}"
    runner = ConsumerRunner(
        name=name,
        bootstrap_servers=KAFKA,
        subscriptions=[Subscription(topic, OrderConfirmed, apply)],
        uow_factory=lambda: PostgresUnitOfWork(pool),
        settings=ConsumerSettings(max_poll_records=500, transaction_batch=transaction_batch),
    )
    labels = {"consumer": name, "topic": topic, "type": "OrderConfirmed", "outcome": "applied"}
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        while (REGISTRY.get_sample_value("leadline_messages_handled_total", labels) or 0) < EVENTS:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started[0]
    finally:
        await runner.stop()
        await task
    assert await pool.fetchval("SELECT count(*) FROM bench_applied") == EVENTS
    return EVENTS / elapsed


async def raw_asyncpg(pool: asyncpg.Pool) -> float:
    await pool.execute("TRUNCATE bench_applied")
    ids = [uuid.uuid4() for _ in range(EVENTS)]

    async def writer(share: list[uuid.UUID]) -> None:
        async with pool.acquire() as conn:
            for event_id in share:
                async with conn.transaction():
                    await conn.execute("INSERT INTO bench_applied (event_id) VALUES ($1)", event_id)

    started = time.perf_counter()
    await asyncio.gather(*(writer(ids[i::PARTITIONS]) for i in range(PARTITIONS)))
    return EVENTS / (time.perf_counter() - started)


async def main() -> None:
    topic = f"bench.consumer.{uuid.uuid4().hex[:8]}"
    database = f"bench_consumer_{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    pg_admin = await asyncpg.connect(POSTGRES)
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await pg_admin.execute(f'CREATE DATABASE "{database}"')
    pool = await asyncpg.create_pool(
        f"{POSTGRES.rpartition('/')[0]}/{database}",
        min_size=PARTITIONS,
        max_size=PARTITIONS + 2,
        ssl=False,  # local server without TLS: skip the SSL probe on every new connection
    )
    assert pool is not None
    try:
        await install_schema(pool, DDL)
        await produce(topic)
        raw = await raw_consumer(topic)
        per_event = await ours(topic, pool, 1)
        batched = await ours(topic, pool, BATCH)
        floor = await raw_asyncpg(pool)
    finally:
        await pool.close()
        await pg_admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await pg_admin.close()
        existing = set(await admin.list_topics())
        await admin.delete_topics([t for t in (topic, dead_letter_topic(topic)) if t in existing])
        await admin.close()

    base = "raw aiokafka consumer, no DB"
    print_figures(
        f"idempotent consumer: {EVENTS:,} events, {PARTITIONS} partitions",
        [
            Figure("ours, 1 event per transaction", per_event, "events/s", base, raw),
            Figure(f"ours, {BATCH} events per transaction", batched, "events/s", base, raw),
            Figure(
                "ours, 1 event per transaction",
                per_event,
                "events/s",
                f"raw asyncpg 1-row transactions, {PARTITIONS} tasks",
                floor,
            ),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
