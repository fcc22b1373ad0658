"""What the inventory handlers need from storage; Postgres in `store`, fakes in unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.inventory.domain import Level, Reservation
from shared.ports import Outbox


class StockStore(Protocol):
    async def lock_levels(self, skus: Sequence[str]) -> dict[str, Level]:
        """Levels of the known SKUs among `skus`, row-locked until the transaction ends
        (locked in SKU order; unknown SKUs are simply absent)."""
        ...

    async def save_levels(self, levels: Sequence[Level]) -> None:
        """Write levels read through `lock_levels` in this transaction."""
        ...

    async def add_on_hand(self, sku: str, quantity: int) -> Level:
        """Add arrived units (creating the SKU if new); returns the new level."""
        ...

    async def reservation(self, order_id: str) -> Reservation | None:
        """The order's reservation, row-locked, or None if the order never reserved."""
        ...

    async def add_reservation(self, reservation: Reservation) -> None:
        """Record a new reservation (or a release before any, holding nothing); a second one
        for the same order is a key conflict."""
        ...

    async def mark_released(self, order_id: str) -> None: ...

    async def add_shipment(self, shipment_id: str, sku: str, quantity: int) -> bool:
        """True the first time a shipment is seen; False for a repeat (apply nothing)."""
        ...


class InventoryUnitOfWork(Protocol):
    """One transaction: the inbox row (claimed by the runner), stock changes and outbox rows."""

    outbox: Outbox
    stock: StockStore
