"""The same-run baseline of bench_e2e: the saga's chain of messages replayed on raw aiokafka.

One produce -> consume hop per message an order's flow puts on Kafka, 9 in all: OrderPlaced,
ReserveStock, StockReserved, RequestPayment, PaymentAuthorized (upstream), the re-keyed payment,
ConfirmOrder, OrderConfirmed, ReceiptIssued. Each hop is a topic of six partitions under the
run's prefix and a consumer task (auto commit off, offsets committed after its sends are
acknowledged) that re-produces every record to the next one with an acks=all idempotent
producer; 600-byte records keyed by order, sent open loop. Also the percentile and polling
helpers bench_e2e shares.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.catalogue import SAGA_PARTITIONS
from shared.kafka.admin import ensure_topics

HOPS = 9
MESSAGE_BYTES = 600
WARMUP_ORDERS = 10

Percentiles = dict[str, float]


def percentiles(values: list[float]) -> Percentiles:
    ordered = sorted(values)
    if not ordered:
        return {p: math.nan for p in ("p50", "p95", "p99")}
    at = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
    return {p: ordered[min(len(ordered) - 1, int(q * len(ordered)))] for p, q in at.items()}


async def until(done: Callable[[], bool], deadline: float) -> bool:
    """Whether `done` held before `deadline` (perf_counter time), polled every 50 ms."""
    while not done():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# -------------------------------------------------------------------------------- the baseline


def hop_record(i: int) -> bytes:
    head = b'{"id":%d,"pad":"' % i
    return head + b"x" * (MESSAGE_BYTES - len(head) - 2) + b'"}'


def idempotent_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)


async def relay(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, to: str) -> None:
    """One hop: every record re-produced to `to`, offsets committed once the batch is acked."""
    while True:
        batches = await consumer.getmany(timeout_ms=100)
        sends = [await producer.send(to, r.value, key=r.key) for rs in batches.values() for r in rs]
        await asyncio.gather(*sends)
        if sends:
            await consumer.commit()


async def sink(consumer: AIOKafkaConsumer, arrivals: dict[int, float]) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=100)
        seen_at = time.perf_counter()
        for records in batches.values():
            for record in records:
                arrivals.setdefault(orjson.loads(record.value)["id"], seen_at)
        if batches:
            await consumer.commit()


async def baseline(
    bootstrap: str, prefix: str, rate: float, count: int, grace: float
) -> Percentiles:
    """End-to-end latency (ms, from each record's intended send time) through HOPS hops."""
    topics = [f"{prefix}baseline.hop{k}" for k in range(1, HOPS + 1)]
    await ensure_topics(bootstrap, [(t, SAGA_PARTITIONS, {}) for t in topics])
    producers = [idempotent_producer(bootstrap) for _ in topics]
    consumers = [
        AIOKafkaConsumer(
            t,
            bootstrap_servers=bootstrap,
            group_id=t,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        for t in topics
    ]
    arrivals: dict[int, float] = {}
    for client in (*producers, *consumers):
        await client.start()
    hops = [relay(consumers[k], producers[k + 1], topics[k + 1]) for k in range(len(topics) - 1)]
    tasks = [asyncio.create_task(c) for c in (*hops, sink(consumers[-1], arrivals))]
    try:
        return await timed_chain(producers[0], topics[0], arrivals, rate, count, grace)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in (*producers, *consumers):
            await client.stop()


async def timed_chain(
    producer: AIOKafkaProducer,
    first: str,
    arrivals: dict[int, float],
    rate: float,
    count: int,
    grace: float,
) -> Percentiles:
    async def send(i: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await producer.send(
            first, hop_record(i), key=f"order-{i}".encode()
        )
        return future

    # warm-up (negative ids): every hop's group joined and its connections open before timing
    for i in range(-WARMUP_ORDERS, 0):
        await send(i)
    warm = range(-WARMUP_ORDERS, 0)
    if not await until(lambda: all(i in arrivals for i in warm), time.perf_counter() + 120):
        raise RuntimeError("baseline warm-up records did not come through the chain")
    t0 = time.perf_counter() + 0.05
    acks = []
    for i in range(count):
        if (delay := t0 + i / rate - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        acks.append(await send(i))
    await asyncio.gather(*acks)
    await until(lambda: all(i in arrivals for i in range(count)), t0 + count / rate + grace)
    return percentiles([(arrivals[i] - (t0 + i / rate)) * 1000 for i in arrivals if i >= 0])
