"""Outbox relay events/s, next to a raw aiokafka producer sending the same messages.

N ReleaseStock envelopes (~330 bytes, KEYS keys) are prepared once. Then, ROUNDS times, in turn:

- raw aiokafka: an AIOKafkaProducer built by `shared.kafka.producer.build_producer` (the very
  settings the relay uses: acks=all, idempotent, same linger and batch size) sends the N
  messages with their keys and headers and awaits every acknowledgement. The transport's
  ceiling: no database. Once more with linger_ms=5, aiokafka's better throughput setting.
- ours: the N messages pre-inserted as outbox rows (COPY, not timed) on a fresh database; timed
  is `OutboxRelay.publish_pending()` from its first SELECT until every row is published,
  acknowledged and marked sent (batches of BATCH rows: select, send all, await all, mark).

Each contender writes to its own fresh topic of PARTITIONS partitions; producers are started
before timing. The median round counts; the machines are shared, so compare the ratio.
Run: `python -m bench.bench_relay` (BENCH_RELAY_EVENTS to change N).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import time
import uuid

import asyncpg
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.report import Figure, print_figures
from schemas.inventory.v1 import ReleaseStock
from shared.envelope import Envelope
from shared.kafka.producer import ProducerSettings, build_producer
from shared.postgres import install_schema
from shared.relay import OutboxRelay

EVENTS = int(os.environ.get("BENCH_RELAY_EVENTS", "20000"))
PARTITIONS = 6
KEYS = 1000
BATCH = 500
ROUNDS = 3
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
POSTGRES = os.environ.get("POSTGRES_DSN", "postgresql://leadline:leadline@127.0.0.1:5433/postgres")
SETTINGS = ProducerSettings()
# aiokafka's throughput sweet spot, for context. The relay keeps linger_ms=0: it hands over a
# whole batch before it yields, so lingering would only delay every relay batch.
LINGERING = dataclasses.replace(SETTINGS, linger_ms=5)

Message = tuple[str, str, bytes, list[tuple[str, bytes]]]  # key, event_id, value, headers


def messages() -> list[Message]:
    out: list[Message] = []
    for i in range(EVENTS):
        key = f"order-{i % KEYS:06d}"
        env = Envelope.wrap(
            ReleaseStock(order_id=key, reason="payment declined by the provider"),
            key=key,
            producer="bench",
        )
        out.append((key, str(env.event_id), env.to_bytes(), env.headers()))
    return out


async def raw_producer(topic: str, batch: list[Message], settings: ProducerSettings) -> float:
    producer = build_producer(KAFKA, "bench-raw", settings)
    await producer.start()
    try:
        await producer.partitions_for(topic)
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value, key=key.encode(), headers=headers)
            for key, _, value, headers in batch
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def copy_rows(
    pool: asyncpg.Pool, rows: list[tuple[str, str, uuid.UUID, bytes, bytes]]
) -> None:
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "outbox",
            records=[(t, k, e, v, h.decode()) for t, k, e, v, h in rows],
            columns=["topic", "key", "event_id", "value", "headers"],
        )


async def relay(dsn: str, topic: str, batch: list[Message]) -> float:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
    assert pool is not None
    try:
        await install_schema(pool)
        rows = [
            (topic, key, uuid.UUID(event_id), value, orjson.dumps([[k, v.decode()] for k, v in h]))
            for key, event_id, value, h in batch
        ]
        relay = OutboxRelay(pool=pool, bootstrap_servers=KAFKA, name="bench", batch_size=BATCH)
        try:
            # one warm-up row: the producer connects and learns the topic before timing
            await copy_rows(pool, rows[:1])
            assert await relay.publish_pending() == 1
            await copy_rows(pool, rows[1:])
            started = time.perf_counter()
            published = await relay.publish_pending()
            elapsed = time.perf_counter() - started
        finally:
            await relay.stop()
        unsent = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        assert (published, unsent) == (len(batch) - 1, 0)
        return elapsed
    finally:
        await pool.close()


async def main() -> None:
    batch = messages()
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    base, _, _ = POSTGRES.rpartition("/")
    maintenance = await asyncpg.connect(POSTGRES)
    topics: list[str] = []
    times: dict[str, list[float]] = {"raw": [], "lingering": [], "relay": []}
    try:
        for _ in range(ROUNDS):
            made = {name: f"bench.relay.{uuid.uuid4().hex[:10]}" for name in times}
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in made.values()])
            topics += made.values()
            database = f"bench_relay_{uuid.uuid4().hex[:10]}"
            await maintenance.execute(f'CREATE DATABASE "{database}"')
            try:
                times["raw"].append(await raw_producer(made["raw"], batch, SETTINGS))
                times["lingering"].append(await raw_producer(made["lingering"], batch, LINGERING))
                times["relay"].append(await relay(f"{base}/{database}", made["relay"], batch))
            finally:
                await maintenance.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        if topics:
            await admin.delete_topics(topics)
        await admin.close()
        await maintenance.close()
    size = statistics.mean(len(value) for _, _, value, _ in batch)
    relay_rate = (EVENTS - 1) / statistics.median(times["relay"])
    ours = "relay: outbox rows published and marked"
    print_figures(
        f"outbox relay, {EVENTS:,} messages of ~{size:.0f} B, {PARTITIONS} partitions, "
        f"batch {BATCH}, median of {ROUNDS}",
        [
            Figure(
                ours,
                relay_rate,
                "msg/s",
                "raw aiokafka producer, same settings",
                EVENTS / statistics.median(times["raw"]),
            ),
            Figure(
                ours,
                relay_rate,
                "msg/s",
                "raw aiokafka producer, linger_ms=5",
                EVENTS / statistics.median(times["lingering"]),
            ),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
