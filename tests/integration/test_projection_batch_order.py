"""One transaction's statements are regrouped (one `executemany` per statement), which keeps the
orders view right only while checkout's columns are guarded by the stream version. An event
published before versions were (stream_version null) counts as "the next one", so its order
against the rest of the batch matters: found by the hypothesis test of the views in a CI run
(an order left `confirmed` at version 1 instead of 2)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from schemas.checkout.v1 import OrderConfirmed
from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.registry import Message
from services.projection import orders
from services.projection.store import ViewUnitOfWork
from shared.envelope import Envelope

pytestmark = pytest.mark.integration


def _unversioned(message: Message, order_id: str) -> Envelope:
    envelope = Envelope.wrap(message, key=order_id, producer="checkout", event_id=uuid.uuid4())
    assert envelope.stream_version is None  # as published before versions were
    return envelope


def _placed(order_id: str) -> OrderPlaced:
    line = OrderLine(sku="TEA-001", quantity=1, unit_price_cents=450, line_total_cents=450)
    return OrderPlaced(
        order_id=order_id, customer_id="alice", lines=[line], currency="EUR", total_cents=450
    )


async def _apply(pool: asyncpg.Pool, schema: str, batch: list[tuple[Message, str]]) -> None:
    """One transaction, as the runner applies a polled batch."""
    async with ViewUnitOfWork(pool, schema) as uow:
        for message, order_id in batch:
            envelope = _unversioned(message, order_id)
            if isinstance(message, OrderPlaced):
                await orders.placed(envelope, message, uow)
            else:
                assert isinstance(message, OrderConfirmed)
                await orders.decided(envelope, message, uow)


async def test_unversioned_outcomes_keep_their_order_within_one_batch(
    pg_pool: asyncpg.Pool,
) -> None:
    schema = orders.VIEW.schema
    async with pg_pool.acquire() as conn:
        await conn.execute(orders.VIEW.ddl(schema))
    first, second = f"o-{uuid.uuid4().hex}", f"o-{uuid.uuid4().hex}"
    # `first` placed in an earlier transaction; this one starts with its outcome, so the status
    # statement is the batch's first statement, before `second`'s placement
    for batch in (
        [(_placed(first), first)],
        [
            (OrderConfirmed(order_id=first), first),
            (_placed(second), second),
            (OrderConfirmed(order_id=second), second),
        ],
    ):
        await _apply(pg_pool, schema, batch)
    async with pg_pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT order_id, status, version FROM {schema}.orders WHERE order_id = ANY($1)",
            [first, second],
        )
    assert {r["order_id"]: (r["status"], r["version"]) for r in rows} == {
        first: ("confirmed", 2),
        second: ("confirmed", 2),
    }
