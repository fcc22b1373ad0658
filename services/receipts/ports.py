"""What the receipts handlers need from storage; Postgres in `store`, fakes in unit tests."""

from __future__ import annotations

from typing import Protocol

from services.receipts.domain import Order, Receipt
from shared.ports import Outbox


class ReceiptStore(Protocol):
    async def add_order(self, order: Order) -> None:
        """Keep the order's copy; a repeat of the same order changes nothing."""
        ...

    async def order(self, order_id: str) -> Order | None:
        """The order's copy, row-locked: issuing for one order is serialised on it."""
        ...

    async def receipt(self, order_id: str) -> Receipt | None: ...

    async def next_sequence(self, issuer: str) -> int:
        """Take the issuer's next number inside this transaction: a rollback gives it back,
        so committed numbers have no holes."""
        ...

    async def add_receipt(self, receipt: Receipt, issuer: str, sequence: int) -> None:
        """Store the receipt and queue its delivery (one per order: a repeat is a key conflict)."""
        ...


class ReceiptsUnitOfWork(Protocol):
    outbox: Outbox
    receipts: ReceiptStore
