"""Stock per SKU, as inventory last announced it (`StockLevelChanged`, keyed by SKU).

The event carries no stream version; one SKU's announcements share a partition and inventory
writes them under the SKU's row lock, so the partition's order is the order they happened in,
and the last one read is the level now.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.inventory.v1 import StockLevelChanged
from services.projection.store import ViewUnitOfWork
from services.projection.views import View
from shared.envelope import Envelope
from shared.kafka.consumer import Subscription

TABLES = """
CREATE TABLE IF NOT EXISTS {s}.stock (
    sku       text        PRIMARY KEY,
    on_hand   integer     NOT NULL CHECK (on_hand >= 0),
    reserved  integer     NOT NULL CHECK (reserved >= 0),
    available integer     NOT NULL CHECK (available >= 0),
    as_of     timestamptz NOT NULL
);
"""
_LEVEL = """
INSERT INTO {s}.stock (sku, on_hand, reserved, available, as_of) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved,
    available = EXCLUDED.available, as_of = EXCLUDED.as_of
"""


async def level_changed(envelope: Envelope, event: StockLevelChanged, uow: ViewUnitOfWork) -> None:
    uow.write(
        _LEVEL,
        event.sku,
        event.on_hand,
        event.reserved,
        event.available,
        envelope.occurred_at,
    )


def subscriptions(topic: Callable[[str], str]) -> list[Subscription[ViewUnitOfWork]]:
    return [Subscription(topic("inventory.events"), StockLevelChanged, level_changed)]


VIEW = View(
    name="stock",
    topics=("inventory.events",),
    tables=TABLES,
    rows=(("stock", "sku"),),
    subscriptions=subscriptions,
)
