"""What the console is shown, made without running the system: the orchestrator's saga view with
sagas brought to their states by the saga's own `apply`, outbox tables (the shared schema) with
pending, sent and parked rows, a consumer group behind on a topic, and a dead letter written
with the headers `shared.kafka.dead_letters` writes."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.inventory.v1 import Shortage, StockLine, StockReservationFailed, StockReserved
from schemas.registry import Message
from services.orchestrator import store
from services.orchestrator.saga import Incoming, Saga, Status, Timeouts, apply
from shared.envelope import Envelope
from shared.kafka.dead_letters import Reason, dead_letter_message
from shared.postgres.outbox import SCHEMA as OUTBOX_SCHEMA

T0 = datetime.now(UTC) - timedelta(minutes=5)


def _placed(order_id: str) -> OrderPlaced:
    line = OrderLine(sku="TEA-001", quantity=2, unit_price_cents=450, line_total_cents=900)
    return OrderPlaced(
        order_id=order_id, customer_id="alice", lines=[line], currency="EUR", total_cents=900
    )


def _reserved(order_id: str) -> StockReserved:
    return StockReserved(order_id=order_id, lines=[StockLine(sku="TEA-001", quantity=2)])


def _out_of_stock(order_id: str) -> StockReservationFailed:
    shortage = Shortage(sku="TEA-001", requested=2, available=0)
    return StockReservationFailed(
        order_id=order_id, reason="insufficient stock", shortages=[shortage]
    )


def saga_through(order_id: str, *messages: Message) -> Saga:
    """The saga of `order_id` after OrderPlaced and `messages`, a second apart."""
    saga: Saga | None = None
    for i, message in enumerate((_placed(order_id), *messages)):
        incoming = Incoming(uuid.uuid4().hex, message, T0 + timedelta(seconds=i))
        saga, _ = apply(saga, incoming, Timeouts())
    assert saga is not None
    return saga


@dataclass(frozen=True)
class Sagas:
    paying: list[str]
    reserving: list[str]
    rejecting: list[str]


async def seed_sagas(dsn: str) -> Sagas:
    """Two sagas paying, one reserving, one rejecting (out of stock), in a fresh saga view."""
    made = Sagas(
        paying=sorted(f"ord-{uuid.uuid4().hex[:10]}" for _ in range(2)),
        reserving=[f"ord-{uuid.uuid4().hex[:10]}"],
        rejecting=[f"ord-{uuid.uuid4().hex[:10]}"],
    )
    sagas = [
        *(saga_through(o, _reserved(o)) for o in made.paying),
        *(saga_through(o) for o in made.reserving),
        *(saga_through(o, _out_of_stock(o)) for o in made.rejecting),
    ]
    assert [s.status for s in sagas] == [
        Status.PAYING,
        Status.PAYING,
        Status.RESERVING,
        Status.REJECTING,
    ]
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await pool.execute(store.SCHEMA)
        await store.save(pool, sagas)
    finally:
        await pool.close()
    return made


async def seed_outbox(dsn: str, *, pending: int, sent: int, parked: int, dropped: int) -> None:
    """An outbox (the shared schema) with rows in each state; a dropped row is parked rows'
    end, neither pending nor parked any more."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(OUTBOX_SCHEMA)
        states = (
            [("NULL", "NULL", "NULL")] * pending
            + [("now()", "NULL", "NULL")] * sent
            + [("NULL", "now()", "NULL")] * parked
            + [("NULL", "now()", "now()")] * dropped
        )
        for sent_at, parked_at, dropped_at in states:
            await conn.execute(
                "INSERT INTO outbox (topic, key, event_id, value, headers, sent_at, parked_at,"
                f" dropped_at) VALUES ('t', 'k', $1, '\\x7b7d', '[]', {sent_at}, {parked_at},"
                f" {dropped_at})",
                uuid.uuid4(),
            )
    finally:
        await conn.close()


async def lagging_group(bootstrap: str, topic: str, group: str, *, records: int, read: int) -> None:
    """`records` records on `topic`, and `group` committed after the first `read`: it lags by
    the rest."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(records):
            await producer.send_and_wait(topic, f"stock-{i}".encode(), key=b"TEA-001")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: read})
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Poison:
    envelope: Envelope
    letter_id: str  # as the console names it: catalogue topic, partition, offset


async def dead_letter(bootstrap: str, prefix: str, source: str) -> Poison:
    """A record of a type no registry knows on `source` (a catalogue name), and its dead letter
    on `<source>.dlq`, as the consumer of `source` would write it."""
    ref = f"poison-{uuid.uuid4().hex[:8]}"
    poison = Envelope(
        event_id=uuid.uuid4(),
        type="ReserveStok",
        version=1,
        occurred_at=datetime.now(UTC),
        producer="console-test",
        key=ref,
        correlation_id=ref,
        payload={"order_id": ref},
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            prefix + source, poison.to_bytes(), key=ref.encode(), headers=poison.headers()
        )
        record = await _record_at(bootstrap, prefix + source, sent.offset)
        letter = dead_letter_message(
            record,
            reason=Reason.UNKNOWN_TYPE,
            error="no handler for type 'ReserveStok' on inventory.commands",
            consumer="inventory",
        )
        stored = await producer.send_and_wait(
            letter.topic, letter.value, key=letter.key, headers=letter.headers
        )
    finally:
        await producer.stop()
    return Poison(poison, f"{source}.dlq:{stored.partition}:{stored.offset}")


async def _record_at(bootstrap: str, topic: str, offset: int) -> object:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        return await asyncio.wait_for(consumer.getone(tp), 30)
    finally:
        await consumer.stop()
