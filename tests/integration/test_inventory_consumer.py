"""The inventory service's consumer, relay and handlers in this process, on real Kafka and
PostgreSQL: duplicates give one effect; an upstream record from another client is understood."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from confluent_kafka import Producer as ConfluentProducer
from prometheus_client import REGISTRY

from schemas.inventory.v1 import ReleaseStock, ReserveStock, StockLine
from schemas.warehouse.v1 import StockReceived
from services.inventory import bootstrap
from services.inventory.settings import InventorySettings
from shared.envelope import Envelope
from shared.kafka.dead_letters import list_dead_letters
from tests.support import eventually, unique
from tests.support.processes import produce, read_all

pytestmark = pytest.mark.integration


@pytest.fixture
async def inventory(
    pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str
) -> AsyncIterator[bootstrap.Running]:
    settings = InventorySettings(
        database_url=pg_dsn,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=catalogue_prefix,
        consumer_group=unique("inventory"),
        seed_stock=False,
    )
    running = await bootstrap.start(settings)
    await running.pool.execute(
        "INSERT INTO stock (sku, on_hand) VALUES ('TEA-001', 10), ('MUG-001', 5)"
    )
    try:
        yield running
    finally:
        await running.stop()


async def _events(bootstrap_servers: str, prefix: str, type_: str, key: str) -> list[Envelope]:
    found = await read_all(bootstrap_servers, prefix + "inventory.events")
    return [e for e in found if e.type == type_ and e.key == key]


async def _level(pool: asyncpg.Pool, sku: str) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT on_hand, reserved FROM stock WHERE sku = $1", sku)
    assert row is not None
    return row["on_hand"], row["reserved"]


async def test_duplicated_commands_reserve_and_release_once(
    inventory: bootstrap.Running, kafka_bootstrap: str, catalogue_prefix: str
) -> None:
    order = unique("order")
    reserve = ReserveStock(
        order_id=order,
        lines=[StockLine(sku="TEA-001", quantity=3), StockLine(sku="MUG-001", quantity=2)],
    )
    first = Envelope.wrap(reserve, key=order, producer="test")
    again = Envelope.wrap(reserve, key=order, producer="test")  # same order, new event id
    commands = catalogue_prefix + "inventory.commands"
    # the very same record twice (a producer retry), then the same order under a new id
    await produce(kafka_bootstrap, commands, [first, first, again])

    answers = await eventually(
        lambda: _events(kafka_bootstrap, catalogue_prefix, "StockReserved", order),
        lambda found: len(found) >= 2,
        what="the reservation and its repeat answered",
    )
    assert {a.event_id for a in answers} == {answers[0].event_id}  # one outcome, said twice
    assert answers[0].causation_id == first.event_id
    assert await _level(inventory.pool, "TEA-001") == (10, 3)
    assert await _level(inventory.pool, "MUG-001") == (5, 2)
    assert await inventory.pool.fetchval("SELECT count(*) FROM reservations") == 1

    release = ReleaseStock(order_id=order, reason="payment declined")
    await produce(
        kafka_bootstrap,
        commands,
        [
            Envelope.wrap(release, key=order, producer="test"),
            Envelope.wrap(release, key=order, producer="test"),
            Envelope.wrap(ReleaseStock(order_id="nobody", reason="x"), key="nobody", producer="t"),
        ],
    )
    released = await eventually(
        lambda: _events(kafka_bootstrap, catalogue_prefix, "StockReleased", order),
        lambda found: len(found) >= 2,
        what="the release and its repeat answered",
    )
    assert {r.event_id for r in released} == {released[0].event_id}
    assert await _level(inventory.pool, "TEA-001") == (10, 0)
    assert await _level(inventory.pool, "MUG-001") == (5, 0)
    levels = await _events(kafka_bootstrap, catalogue_prefix, "StockLevelChanged", "TEA-001")
    assert [lv.payload["reserved"] for lv in levels] == [3, 0]


def _confluent_produce(
    bootstrap_servers: str, topic: str, envelopes: list[Envelope], partitioner: str | None
) -> None:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
    }
    if partitioner is not None:
        config["partitioner"] = partitioner
    producer = ConfluentProducer(config)
    errors: list[object] = []
    for e in envelopes:
        producer.produce(
            topic,
            value=e.to_bytes(),
            key=e.key.encode(),
            headers=e.headers(),
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
    assert producer.flush(30) == 0
    assert errors == []


# librdkafka's default partitioner hashes keys with CRC32, ours (and Java's) with murmur2: a SKU
# lands on another partition than our producers would choose. Inventory needs no co-partitioning
# (stock rows are locked in the database), so either choice must work.
@pytest.mark.parametrize("partitioner", [None, "murmur2_random"], ids=["crc32-default", "murmur2"])
async def test_stock_received_from_a_confluent_kafka_producer_is_applied_once(
    inventory: bootstrap.Running,
    kafka_bootstrap: str,
    catalogue_prefix: str,
    partitioner: str | None,
) -> None:
    shipment = unique("shipment")
    arrived = StockReceived(sku="TEA-001", quantity=7, shipment_id=shipment)
    # the warehouse resends the same shipment under a new event id: one arrival, not two
    records = [Envelope.wrap(arrived, key="TEA-001", producer="warehouse") for _ in range(2)]
    await asyncio.to_thread(
        _confluent_produce,
        kafka_bootstrap,
        catalogue_prefix + "warehouse.events",
        records,
        partitioner,
    )
    levels = await eventually(
        lambda: _events(kafka_bootstrap, catalogue_prefix, "StockLevelChanged", "TEA-001"),
        lambda found: len(found) >= 1,
        what="the new level announced",
    )
    assert levels[0].payload == {"sku": "TEA-001", "on_hand": 17, "reserved": 0, "available": 17}
    assert levels[0].causation_id == records[0].event_id
    # the resend was handled too (its inbox row exists) and changed nothing
    await eventually(
        lambda: inventory.pool.fetchval(
            "SELECT count(*) FROM inbox WHERE event_id = $1", records[1].event_id
        ),
        lambda n: n == 1,
        what="the resend handled",
    )
    assert await _level(inventory.pool, "TEA-001") == (17, 0)


async def test_a_command_reusing_an_upstream_events_id_is_still_applied(
    inventory: bootstrap.Running, kafka_bootstrap: str, catalogue_prefix: str
) -> None:
    # ids come from foreign producers too: the warehouse's id must not swallow our command
    shared_id = uuid.uuid4()
    arrived = StockReceived(sku="MUG-001", quantity=1, shipment_id=unique("shipment"))
    upstream = Envelope.wrap(arrived, key="MUG-001", producer="warehouse", event_id=shared_id)
    await produce(kafka_bootstrap, catalogue_prefix + "warehouse.events", [upstream])
    await eventually(
        lambda: _level(inventory.pool, "MUG-001"), lambda lv: lv == (6, 0), what="arrival applied"
    )
    order = unique("order")
    reserve = ReserveStock(order_id=order, lines=[StockLine(sku="TEA-001", quantity=2)])
    command = Envelope.wrap(reserve, key=order, producer="saga", event_id=shared_id)
    await produce(kafka_bootstrap, catalogue_prefix + "inventory.commands", [command])

    await eventually(
        lambda: _events(kafka_bootstrap, catalogue_prefix, "StockReserved", order),
        lambda found: len(found) == 1,
        what="the reservation made",
    )
    assert await _level(inventory.pool, "TEA-001") == (10, 2)


async def test_an_event_id_reused_for_another_message_is_dead_lettered_as_a_collision(
    inventory: bootstrap.Running, kafka_bootstrap: str, catalogue_prefix: str
) -> None:
    warehouse = catalogue_prefix + "warehouse.events"
    reused = uuid.uuid4()
    tea = StockReceived(sku="TEA-001", quantity=1, shipment_id=unique("shipment"))
    mug = StockReceived(sku="MUG-001", quantity=4, shipment_id=unique("shipment"))
    first = Envelope.wrap(tea, key="TEA-001", producer="warehouse", event_id=reused)
    other = Envelope.wrap(mug, key="MUG-001", producer="warehouse", event_id=reused)
    collisions = _collisions(warehouse)
    # the first one, and again (a redelivery: skipped); only then another message under its
    # id (the two SKUs may sit on different partitions, which race for the claim)
    await produce(kafka_bootstrap, warehouse, [first, first])
    await eventually(
        lambda: _level(inventory.pool, "TEA-001"), lambda lv: lv == (11, 0), what="first applied"
    )
    await produce(kafka_bootstrap, warehouse, [other])

    letters = await eventually(
        lambda: list_dead_letters(kafka_bootstrap, warehouse + ".dlq"),
        lambda found: len(found) == 1,
        what="the collision dead-lettered",
    )
    assert letters[0].reason == "event-id-collision"
    assert letters[0].event_id == str(reused)
    assert "MUG-001" in letters[0].error
    assert await _level(inventory.pool, "TEA-001") == (11, 0)
    assert await _level(inventory.pool, "MUG-001") == (5, 0)  # never applied
    assert _collisions(warehouse) == collisions + 1


def _collisions(topic: str) -> float:
    """The collisions counted on `topic` by any consumer of this process."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "leadline_inbox_collisions"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("topic") == topic
    )
