"""Saga outcomes per (UTC) day: orders confirmed, rejected (by reason) and cancelled, each order
counted once, on the day of its outcome. One row per decided order; the daily counts are
counted when asked (`queries.outcomes_per_day`), for the reason given in `sales`."""

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
    reason   text NOT NULL  -- '' unless rejected: rejections are counted by reason
);
CREATE INDEX IF NOT EXISTS decided_by_day ON {s}.decided (day);
"""
# an order's outcome is final: the first one read stays
_DECIDED = """
INSERT INTO {s}.decided (order_id, day, outcome, reason) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
"""


async def decided(
    envelope: Envelope, event: OrderConfirmed | OrderRejected | OrderCancelled, uow: ViewUnitOfWork
) -> None:
    outcome = {OrderConfirmed: "confirmed", OrderRejected: "rejected", OrderCancelled: "cancelled"}
    reason = event.reason if isinstance(event, OrderRejected) else ""
    uow.write(
        _DECIDED,
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
    rows=(("decided", "order_id"),),
    subscriptions=subscriptions,
)
