"""Sales per SKU per day: the lines of each confirmed order, counted on the (UTC) day it was
confirmed. Both facts come from checkout's topic, where one order's events keep their order,
so the lines (from `OrderPlaced`) are always here before the confirmation that counts them;
`counted` makes the count once per order, whatever is redelivered."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from schemas.checkout.v1 import OrderConfirmed
from schemas.checkout.v2 import OrderPlaced
from services.projection.store import ViewUnitOfWork
from services.projection.views import View, utc_day
from shared.envelope import Envelope
from shared.kafka.consumer import Subscription

TABLES = """
CREATE TABLE IF NOT EXISTS {s}.order_lines (
    order_id     text    NOT NULL,
    sku          text    NOT NULL,
    currency     text    NOT NULL,
    quantity     integer NOT NULL,
    amount_cents bigint  NOT NULL,
    PRIMARY KEY (order_id, sku)
);
CREATE TABLE IF NOT EXISTS {s}.counted (
    order_id text PRIMARY KEY,
    day      date NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.daily (
    day           date    NOT NULL,
    sku           text    NOT NULL,
    currency      text    NOT NULL,
    quantity      bigint  NOT NULL,
    revenue_cents bigint  NOT NULL,
    orders        integer NOT NULL,
    PRIMARY KEY (day, sku, currency)
);
"""
_LINE = """
INSERT INTO {s}.order_lines (order_id, sku, currency, quantity, amount_cents)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
"""
_COUNT = """
WITH first AS (
    INSERT INTO {s}.counted (order_id, day) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING day
)
INSERT INTO {s}.daily (day, sku, currency, quantity, revenue_cents, orders)
SELECT first.day, l.sku, l.currency, l.quantity, l.amount_cents, 1
FROM first, {s}.order_lines l WHERE l.order_id = $1
ON CONFLICT (day, sku, currency) DO UPDATE SET
    quantity = {s}.daily.quantity + EXCLUDED.quantity,
    revenue_cents = {s}.daily.revenue_cents + EXCLUDED.revenue_cents,
    orders = {s}.daily.orders + 1
"""


async def placed(envelope: Envelope, event: OrderPlaced, uow: ViewUnitOfWork) -> None:
    per_sku: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in event.lines:
        per_sku[line.sku][0] += line.quantity
        per_sku[line.sku][1] += line.line_total_cents
    await uow.connection.executemany(
        uow.sql(_LINE),
        [(event.order_id, sku, event.currency, q, a) for sku, (q, a) in per_sku.items()],
    )


async def confirmed(envelope: Envelope, event: OrderConfirmed, uow: ViewUnitOfWork) -> None:
    await uow.connection.execute(uow.sql(_COUNT), event.order_id, utc_day(envelope.occurred_at))


def subscriptions(topic: Callable[[str], str]) -> list[Subscription[ViewUnitOfWork]]:
    checkout = topic("checkout.events")
    return [
        Subscription(checkout, OrderPlaced, placed),
        Subscription(checkout, OrderConfirmed, confirmed),
    ]


VIEW = View(
    name="sales",
    topics=("checkout.events",),
    tables=TABLES,
    rows=(
        ("order_lines", "order_id, sku"),
        ("counted", "order_id"),
        ("daily", "day, sku, currency"),
    ),
    subscriptions=subscriptions,
)
