"""Sales per SKU per day: the lines of each confirmed order, counted on the (UTC) day it was
confirmed. Both facts come from checkout's topic, where one order's events keep their order,
so the lines (from `OrderPlaced`) are always here before the confirmation that counts them.

Rows are per order (`order_lines`, and `counted`: which orders count, on which day); the daily
sums are summed when asked (`queries.sales_per_day`, by the index on day). Counters kept per
(day, SKU) instead would be a few hot rows every partition's transaction updates, in whatever
order its orders' SKUs come: lock waits and deadlocks between partitions, for a figure that
one indexed GROUP BY gives."""

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
CREATE INDEX IF NOT EXISTS counted_by_day ON {s}.counted (day);
"""
_LINE = """
INSERT INTO {s}.order_lines (order_id, sku, currency, quantity, amount_cents)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
"""
# an order is confirmed once: a second OrderConfirmed for it (another id) keeps the first day
_COUNT = "INSERT INTO {s}.counted (order_id, day) VALUES ($1, $2) ON CONFLICT DO NOTHING"


async def placed(envelope: Envelope, event: OrderPlaced, uow: ViewUnitOfWork) -> None:
    per_sku: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in event.lines:
        per_sku[line.sku][0] += line.quantity
        per_sku[line.sku][1] += line.line_total_cents
    for sku, (quantity, amount) in per_sku.items():
        uow.write(_LINE, event.order_id, sku, event.currency, quantity, amount)


async def confirmed(envelope: Envelope, event: OrderConfirmed, uow: ViewUnitOfWork) -> None:
    uow.write(_COUNT, event.order_id, utc_day(envelope.occurred_at))


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
    ),
    subscriptions=subscriptions,
)
