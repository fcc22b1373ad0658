"""What faust would do silently, the saga processor does visibly: a message that keeps failing is
retried, then dead-lettered with its reason and its saga marked failed; a record keyed onto
another partition than its order's is dead-lettered as misrouted. The processor runs in this
process on real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.inventory.v1 import StockLine, StockReserved
from services.orchestrator import store
from services.orchestrator.deadlines import partition_of
from services.orchestrator.processor import Processor
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.view import ViewWriter
from shared.envelope import Envelope
from shared.kafka.dead_letters import list_dead_letters
from shared.postgres import install_schema
from tests.support import eventually, unique
from tests.support.processes import produce

pytestmark = pytest.mark.integration


class FailingProcessor(Processor):
    """The real processor whose step fails on demand for some orders (like the consumer tests'
    counting handler): the failure path around it is what is under test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.poison: set[str] = set()

    async def _step(self, envelope: Envelope, message: Any, record: Any) -> None:
        if message.order_id in self.poison and message.TYPE == "StockReserved":
            raise RuntimeError(f"boom on {message.order_id}")
        await super()._step(envelope, message, record)


@pytest.fixture
async def processor(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, catalogue_prefix: str, tmp_path: Path
) -> AsyncIterator[FailingProcessor]:
    await install_schema(pg_pool, store.SCHEMA)
    settings = OrchestratorSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=catalogue_prefix,
        data_dir=tmp_path / "orchestrator",
        app_id=unique("orchestrator"),
        max_attempts=2,
    )
    view = ViewWriter(pg_pool, interval=0.05)
    made = FailingProcessor(settings, view)
    tasks = [asyncio.create_task(view.run()), asyncio.create_task(made.run())]
    try:
        await eventually(made.ready, bool, timeout=60, what="processor ready")
        yield made
    finally:
        await made.stop()
        await view.stop()
        await asyncio.wait(tasks)


def placed(order_id: str) -> Envelope:
    line = OrderLine(sku="TEA-001", quantity=1, unit_price_cents=450, line_total_cents=450)
    message = OrderPlaced(
        order_id=order_id, customer_id="alice", lines=[line], currency="EUR", total_cents=450
    )
    return Envelope.wrap(message, key=order_id, producer="checkout")


def reserved(order_id: str) -> Envelope:
    message = StockReserved(order_id=order_id, lines=[StockLine(sku="TEA-001", quantity=1)])
    return Envelope.wrap(message, key=order_id, producer="inventory")


async def test_a_message_that_keeps_failing_is_dead_lettered_and_its_saga_failed(
    processor: FailingProcessor, pg_pool: asyncpg.Pool, kafka_bootstrap: str, catalogue_prefix: str
) -> None:
    poisoned, fine = unique("order"), unique("order")
    processor.poison = {poisoned}
    await produce(
        kafka_bootstrap, catalogue_prefix + "checkout.events", [placed(poisoned), placed(fine)]
    )
    await produce(
        kafka_bootstrap, catalogue_prefix + "inventory.events", [reserved(poisoned), reserved(fine)]
    )

    letters = await eventually(
        lambda: list_dead_letters(kafka_bootstrap, catalogue_prefix + "inventory.events.dlq"),
        lambda found: len(found) == 1,
        what="the failing message dead-lettered",
    )
    assert letters[0].reason == "handler-failed"
    assert f"boom on {poisoned}" in letters[0].error
    failed = await eventually(
        lambda: store.load(pg_pool, poisoned),
        lambda s: s is not None and s.status.value == "failed",
        what="the saga marked failed",
    )
    assert failed is not None
    assert "2 failed attempts" in (failed.reason or "")
    # the partition moved on: the other order's saga went ahead
    await eventually(
        lambda: store.load(pg_pool, fine),
        lambda s: s is not None and s.status.value == "paying",
        what="the other saga paying",
    )


async def test_a_record_keyed_off_its_orders_partition_is_dead_lettered_as_misrouted(
    processor: FailingProcessor, pg_pool: asyncpg.Pool, kafka_bootstrap: str, catalogue_prefix: str
) -> None:
    order_id = unique("order")
    await produce(kafka_bootstrap, catalogue_prefix + "checkout.events", [placed(order_id)])
    await eventually(lambda: store.load(pg_pool, order_id), lambda s: s is not None)
    wrong = (partition_of(order_id, 6) + 1) % 6
    envelope = reserved(order_id)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            catalogue_prefix + "inventory.events",
            envelope.to_bytes(),
            key=order_id.encode(),
            partition=wrong,
            headers=envelope.headers(),
        )
    finally:
        await producer.stop()
    letters = await eventually(
        lambda: list_dead_letters(kafka_bootstrap, catalogue_prefix + "inventory.events.dlq"),
        lambda found: len(found) == 1,
        what="misrouted record dead-lettered",
    )
    assert letters[0].reason == "misrouted"
    saga = await store.load(pg_pool, order_id)
    assert saga is not None
    assert saga.status.value == "reserving"  # its state never saw the misrouted record
