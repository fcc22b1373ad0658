"""The subscription table: topic → message type → handler, in one greppable place (STYLE 3)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from schemas.inventory.v1 import ReleaseStock, ReserveStock
from schemas.warehouse.v1 import StockReceived
from services.inventory import handlers
from services.inventory.store import PostgresInventoryUnitOfWork
from shared.kafka.consumer import Subscription


@dataclass(frozen=True)
class Topics:
    commands: str
    events: str
    warehouse: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            commands=prefix + "inventory.commands",
            events=prefix + "inventory.events",
            warehouse=prefix + "warehouse.events",
        )


def subscriptions(topics: Topics) -> list[Subscription[PostgresInventoryUnitOfWork]]:
    out = topics.events
    return [
        Subscription(topics.commands, ReserveStock, partial(handlers.reserve_stock, out=out)),
        Subscription(topics.commands, ReleaseStock, partial(handlers.release_stock, out=out)),
        Subscription(topics.warehouse, StockReceived, partial(handlers.receive_stock, out=out)),
    ]
