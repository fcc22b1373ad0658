"""Saga outcomes per (UTC) day: orders confirmed, rejected (by reason) and cancelled, each order
counted once, on the day of its outcome (`decided` holds which orders are counted)."""

from __future__ import annotations

from collections.abc import Callable

from schemas.checkout.v1 import OrderCancelled, OrderConfirmed, OrderRejected
from services.projection.store import ViewUnitOfWork
from services.projection.views import View, utc_day
from shared.envelope import Envelope
from shared.kafka.consumer import Subscription

TABLES = """
CREATE TABLE IF NOT EXISTS {s}.decided (
    order_id text PRIMARY KEY,
    day      date NOT NULL,
    outcome  text NOT NULL CHECK (outcome IN ('confirmed', 'rejected', 'cancelled')),
    reason   text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.daily (
    day     date    NOT NULL,
    outcome text    NOT NULL,
    reason  text    NOT NULL,  -- '' unless rejected: rejections are counted by reason
    orders  integer NOT NULL,
    PRIMARY KEY (day, outcome, reason)
);
"""
_DECIDED = """
WITH first AS (
    INSERT INTO {s}.decided (order_id, day, outcome, reason) VALUES ($1, $2, $3, $4)
    ON CONFLICT DO NOTHING RETURNING day, outcome, reason
)
INSERT INTO {s}.daily (day, outcome, reason, orders)
SELECT day, outcome, reason, 1 FROM first
ON CONFLICT (day, outcome, reason) DO UPDATE SET orders = {s}.daily.orders + 1
"""


async def decided(
    envelope: Envelope, event: OrderConfirmed | OrderRejected | OrderCancelled, uow: ViewUnitOfWork
) -> None:
    outcome = {OrderConfirmed: "confirmed", OrderRejected: "rejected", OrderCancelled: "cancelled"}
    reason = event.reason if isinstance(event, OrderRejected) else ""
    await uow.connection.execute(
        uow.sql(_DECIDED),
        event.order_id,
        utc_day(envelope.occurred_at),
        outcome[type(event)],
        reason,
    )


def subscriptions(topic: Callable[[str], str]) -> list[Subscription[ViewUnitOfWork]]:
    checkout = topic("checkout.events")
    return [
        Subscription(checkout, m, decided) for m in (OrderConfirmed, OrderRejected, OrderCancelled)
    ]


VIEW = View(
    name="outcomes",
    topics=("checkout.events",),
    tables=TABLES,
    rows=(("decided", "order_id"), ("daily", "day, outcome, reason")),
    subscriptions=subscriptions,
)
