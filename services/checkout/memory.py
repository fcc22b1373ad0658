"""In-memory twins of checkout's tables, for unit tests of the handlers: like the PostgreSQL
ones, nothing is visible before commit and a rolled-back unit of work leaves no trace."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from services.checkout.catalogue import SEED, Product
from services.checkout.domain import Price
from services.checkout.ports import StoredRequest
from shared.memory import MemoryDatabase, MemoryUnitOfWork


@dataclass
class MemoryCheckoutDatabase(MemoryDatabase):
    products: dict[str, Product] = field(default_factory=lambda: {p.sku: p for p in SEED})
    idempotency: dict[tuple[str, str], StoredRequest] = field(default_factory=dict)


class MemoryProducts:
    def __init__(self, db: MemoryCheckoutDatabase) -> None:
        self._db = db

    async def prices(self, skus: Collection[str]) -> dict[str, Price]:
        found = (self._db.products[s] for s in skus if s in self._db.products)
        return {p.sku: Price(p.unit_price_cents, p.currency) for p in found}


class MemoryIdempotencyKeys:
    def __init__(self, db: MemoryCheckoutDatabase) -> None:
        self._db = db
        self.staged: dict[tuple[str, str], StoredRequest] = {}

    async def claim(
        self, customer_id: str, key: str, fingerprint: str, order_id: str
    ) -> StoredRequest | None:
        found = self._db.idempotency.get((customer_id, key))
        if found is not None:
            return found
        self.staged[(customer_id, key)] = StoredRequest(fingerprint, order_id, {})
        return None

    async def record(self, customer_id: str, key: str, response: dict[str, Any]) -> None:
        held = self.staged[(customer_id, key)]
        self.staged[(customer_id, key)] = StoredRequest(held.fingerprint, held.order_id, response)


class MemoryCheckoutUnitOfWork(MemoryUnitOfWork):
    db: MemoryCheckoutDatabase
    products: MemoryProducts
    idempotency: MemoryIdempotencyKeys

    def __init__(self, db: MemoryCheckoutDatabase) -> None:
        super().__init__(db)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.products = MemoryProducts(self.db)
        self.idempotency = MemoryIdempotencyKeys(self.db)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
        if exc_type is None:
            self.db.idempotency.update(self.idempotency.staged)
