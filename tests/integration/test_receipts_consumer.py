"""The receipts service's consumer, relay and delivery loop in this process, on real Kafka and
PostgreSQL: one receipt per order whatever is duplicated, gap-free numbers under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from schemas.checkout.v1 import OrderConfirmed
from schemas.checkout.v2 import OrderLine, OrderPlaced
from services.receipts import bootstrap, handlers
from services.receipts.settings import ReceiptsSettings
from services.receipts.store import SCHEMA, PostgresReceiptsUnitOfWork
from shared.envelope import Envelope
from shared.postgres import install_schema
from tests.support import eventually, unique
from tests.support.processes import produce, read_all

pytestmark = pytest.mark.integration

Start = Callable[[], Awaitable[bootstrap.Running]]


@pytest.fixture
async def start_receipts(
    pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str, tmp_path: Path
) -> AsyncIterator[Start]:
    """Starts receipts instances (same database, same consumer group); stops them afterwards."""
    group = unique("receipts")
    started: list[bootstrap.Running] = []

    async def start() -> bootstrap.Running:
        settings = ReceiptsSettings(
            database_url=pg_dsn,
            kafka_bootstrap_servers=kafka_bootstrap,
            topic_prefix=catalogue_prefix,
            consumer_group=group,
            mailbox_dir=tmp_path / "mailbox",
            delivery_poll_seconds=0.2,
        )
        started.append(await bootstrap.start(settings))
        return started[-1]

    try:
        yield start
    finally:
        for running in started:
            await running.stop()


def placed(order_id: str, customer: str = "alice") -> Envelope:
    event = OrderPlaced(
        order_id=order_id,
        customer_id=customer,
        currency="EUR",
        total_cents=1000,
        lines=[OrderLine(sku="TEA-001", quantity=2, unit_price_cents=500, line_total_cents=1000)],
    )
    return Envelope.wrap(event, key=order_id, producer="checkout")


def confirmed(order_id: str) -> Envelope:
    return Envelope.wrap(OrderConfirmed(order_id=order_id), key=order_id, producer="checkout")


async def _numbers(pool: asyncpg.Pool) -> list[int]:
    return [r["sequence"] for r in await pool.fetch("SELECT sequence FROM receipts ORDER BY 1")]


async def test_duplicated_confirmations_issue_and_deliver_one_receipt(
    start_receipts: Start, kafka_bootstrap: str, catalogue_prefix: str, tmp_path: Path
) -> None:
    receipts = await start_receipts()
    order = unique("order")
    confirm = confirmed(order)
    await produce(
        kafka_bootstrap,
        catalogue_prefix + "checkout.events",
        [placed(order), placed(order), confirm, confirm, confirmed(order)],
    )
    topic = catalogue_prefix + "receipts.events"

    async def progress() -> tuple[int, int, list[Envelope]]:
        # every stage, so a stall names itself: handled, still in the outbox, on the topic
        handled = await receipts.pool.fetchval("SELECT count(*) FROM inbox")
        unsent = await receipts.pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        return handled, unsent, await read_all(kafka_bootstrap, topic)

    *_, issued = await eventually(
        progress,
        lambda p: len(p[2]) >= 2,  # the first answer and the repeat's
        what="ReceiptIssued twice",
    )
    assert {e.event_id for e in issued} == {issued[0].event_id}
    assert issued[0].payload["receipt_number"] == "LL-00000001"
    assert issued[0].payload["tax_cents"] == 200
    assert issued[0].payload["total_cents"] == 1200
    assert await _numbers(receipts.pool) == [1]

    mailbox = tmp_path / "mailbox"
    await eventually(
        lambda: receipts.pool.fetchval("SELECT status FROM deliveries"),
        lambda status: status == "delivered",
        what="delivered",
    )
    assert [p.name for p in mailbox.iterdir()] == ["LL-00000001.eml"]


async def test_numbers_stay_gap_free_and_unique_under_concurrent_confirmations(
    start_receipts: Start, kafka_bootstrap: str, catalogue_prefix: str
) -> None:
    # two consumers in one group, each handling its partitions concurrently
    first = await start_receipts()
    await start_receipts()
    orders = [unique("order") for _ in range(40)]
    await produce(
        kafka_bootstrap,
        catalogue_prefix + "checkout.events",
        [e for o in orders for e in (placed(o), confirmed(o))],
    )
    await eventually(
        lambda: first.pool.fetchval("SELECT count(*) FROM receipts"),
        lambda n: n == len(orders),
        timeout=60,
        what="every order has its receipt",
    )
    assert await _numbers(first.pool) == list(range(1, len(orders) + 1))
    numbers = await first.pool.fetch("SELECT number FROM receipts")
    assert {r["number"] for r in numbers} == {f"LL-{n:08d}" for n in range(1, 41)}
    partitions = await first.pool.fetchval("SELECT count(DISTINCT order_id) FROM receipts")
    assert partitions == len(orders)


class Abort(Exception):
    pass


async def test_a_rolled_back_issuance_leaves_no_hole(pg_pool: asyncpg.Pool) -> None:
    await install_schema(pg_pool, SCHEMA)
    issuing = handlers.Issuing(issuer="LL", tax_rate=Decimal("0.20"), out="receipts.events")
    orders = [unique("order") for _ in range(30)]
    for order in orders:
        async with PostgresReceiptsUnitOfWork(pg_pool) as uow:
            event = placed(order)
            await handlers.keep_order(event, OrderPlaced.model_validate(event.payload), uow)

    async def confirm(i: int, order: str) -> None:
        envelope = confirmed(order)
        async with PostgresReceiptsUnitOfWork(pg_pool) as uow:
            await handlers.issue_receipt(
                envelope, OrderConfirmed(order_id=order), uow, issuing=issuing
            )
            if i % 3 == 0:
                raise Abort  # after the number was taken: the transaction rolls back

    results = await asyncio.gather(
        *(confirm(i, o) for i, o in enumerate(orders)), return_exceptions=True
    )
    assert sum(isinstance(r, Abort) for r in results) == 10
    assert [r for r in results if r is not None and not isinstance(r, Abort)] == []
    assert await _numbers(pg_pool) == list(range(1, 21))
    outbox = await pg_pool.fetchval("SELECT count(*) FROM outbox")
    assert outbox == 20  # the rolled-back ones announced nothing either
