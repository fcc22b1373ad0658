"""Shared by the consumer and dead-letter tests: a counting handler that fails on demand,
producing raw records, running a runner, reading committed offsets and topics, and removing
the `.dlq` topics a runner creates."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from schemas.checkout.v1 import OrderConfirmed
from shared.envelope import Envelope, Headers
from shared.errors import PermanentError, TransientError
from shared.kafka.consumer import ConsumerRunner, ConsumerSettings, Subscription
from shared.kafka.dead_letters import dead_letter_topic
from shared.postgres.uow import PostgresUnitOfWork
from tests.conftest import TopicFactory
from tests.integration.procs.counting_consumer import count
from tests.support import eventually

Raw = tuple[bytes | None, bytes, Headers]  # key, value, headers


def confirmed(order_id: str, **kwargs: Any) -> Envelope:
    return Envelope.wrap(OrderConfirmed(order_id=order_id), key=order_id, producer="test", **kwargs)


def raw(envelope: Envelope) -> Raw:
    return envelope.key.encode(), envelope.to_bytes(), envelope.headers()


async def produce(bootstrap: str, topic: str, records: Sequence[Raw]) -> list[Any]:
    """Send every record in order; return their RecordMetadata once all are acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running(runner: ConsumerRunner[Any]) -> AsyncIterator[asyncio.Task[None]]:
    """Start the runner and its loop; stop it gracefully on exit, surfacing a loop failure."""
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        await runner.stop()
        await task


async def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """partition -> committed offset of `group` (absent: nothing committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        gone = [t for t in topics if t in existing]
        if gone:
            await admin.delete_topics(gone)
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record on a one-partition topic, from the beginning (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[Any] = []
        while await consumer.position(tp) < end:
            records += (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
        return records
    finally:
        await consumer.stop()


T = TypeVar("T")

FAST = ConsumerSettings(poll_timeout_ms=200, max_attempts=3, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
async def topic(new_topic: TopicFactory, kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """new_topic, plus removal of the `.dlq` topic the runner creates for it."""
    made: list[str] = []

    async def make(prefix: str = "consumer", partitions: int = 1) -> str:
        name = await new_topic(prefix, partitions)
        made.append(dead_letter_topic(name))
        return name

    yield make
    await delete_topics(kafka_bootstrap, made)


class Recorder:
    """The counting handler, failing on demand after its effect is written (so a failure must
    roll the effect back)."""

    def __init__(self) -> None:
        self.calls: collections.Counter[uuid.UUID] = collections.Counter()
        self.fail_first: dict[uuid.UUID, int] = {}  # event id -> attempts that raise transiently
        self.refuse: set[uuid.UUID] = set()  # PermanentError
        self.broken: set[uuid.UUID] = set()  # raises on every attempt
        self.seen_claimed_on_retry: list[bool] = []
        self.pool: asyncpg.Pool | None = None

    async def __call__(
        self, envelope: Envelope, message: OrderConfirmed, uow: PostgresUnitOfWork
    ) -> None:
        self.calls[envelope.event_id] += 1
        if self.calls[envelope.event_id] > 1 and self.pool is not None:
            # from outside the transaction: did the failed attempt leave its inbox row behind?
            left = await self.pool.fetchval(
                "SELECT count(*) FROM inbox WHERE event_id = $1", envelope.event_id
            )
            self.seen_claimed_on_retry.append(left > 0)
        await count(envelope, message, uow)
        if envelope.event_id in self.refuse:
            raise PermanentError(f"order {message.order_id} refused")
        if envelope.event_id in self.broken:
            raise RuntimeError("boom")
        if self.calls[envelope.event_id] <= self.fail_first.get(envelope.event_id, 0):
            raise TransientError("flaky")


def runner_for(
    name: str,
    bootstrap: str,
    topic: str,
    handler: Any,
    pool: asyncpg.Pool,
    settings: ConsumerSettings = FAST,
) -> ConsumerRunner[PostgresUnitOfWork]:
    return ConsumerRunner(
        name=name,
        bootstrap_servers=bootstrap,
        subscriptions=[Subscription(topic, OrderConfirmed, handler)],
        uow_factory=lambda: PostgresUnitOfWork(pool),
        settings=settings,
    )


async def applied(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT event_id, key, times FROM applied ORDER BY seq")


async def counter(pool: asyncpg.Pool) -> int:
    n: int = await pool.fetchval("SELECT n FROM counter")
    return n


async def inbox(pool: asyncpg.Pool) -> set[uuid.UUID]:
    return {r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox")}


def polled(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A probe for `eventually` from a plain function."""

    async def probe() -> T:
        return read()

    return probe


def handled(name: str, topic: str, outcome: str) -> float:
    labels = {"consumer": name, "topic": topic, "type": "OrderConfirmed", "outcome": outcome}
    return REGISTRY.get_sample_value("leadline_messages_handled_total", labels) or 0.0


async def settled(bootstrap: str, group: str, offsets: dict[int, int]) -> None:
    """Wait until the group committed exactly `offsets` (partition -> next offset)."""
    await eventually(
        lambda: committed_offsets(bootstrap, group),
        lambda c: c == offsets,
        what=f"offsets {offsets} committed",
    )


def ends(metadata: list[Any]) -> dict[int, int]:
    last: dict[int, int] = {}
    for m in metadata:
        last[m.partition] = max(last.get(m.partition, 0), m.offset + 1)
    return last
