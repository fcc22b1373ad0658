"""What the checkout handlers need from storage besides the backbone's ports; PostgreSQL in
`store`, in-memory twins in `memory`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from services.checkout.domain import Price
from shared.ports import EventStore, Outbox, UnitOfWork


class Products(Protocol):
    async def prices(self, skus: Collection[str]) -> dict[str, Price]:
        """Prices of the active products among `skus`; unknown SKUs are simply absent."""
        ...


@dataclass(frozen=True)
class StoredRequest:
    """The first request made under an idempotency key, and the answer it got."""

    fingerprint: str
    order_id: str
    response: dict[str, Any]


class IdempotencyKeys(Protocol):
    async def claim(
        self, customer_id: str, key: str, fingerprint: str, order_id: str
    ) -> StoredRequest | None:
        """None when the key is new: it is now held by this transaction, and `record` must
        store the answer before commit. Otherwise the committed first request under the key.
        A concurrent claim of the same key waits until the holder commits or rolls back."""
        ...

    async def record(self, customer_id: str, key: str, response: dict[str, Any]) -> None: ...


class OrderUnitOfWork(Protocol):
    """What loading and saving an order needs."""

    @property
    def events(self) -> EventStore: ...

    @property
    def outbox(self) -> Outbox: ...


class CheckoutUnitOfWork(UnitOfWork, Protocol):
    """One transaction: order events, outbox rows, the inbox row and checkout's own tables."""

    @property
    def products(self) -> Products: ...

    @property
    def idempotency(self) -> IdempotencyKeys: ...
