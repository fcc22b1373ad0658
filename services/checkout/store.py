"""Checkout's own tables on PostgreSQL, bound to the unit of work's transaction."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Self

import asyncpg
import orjson

from services.checkout.catalogue import Product
from services.checkout.domain import Price
from services.checkout.ports import StoredRequest
from shared.postgres.types import Connection
from shared.postgres.uow import PostgresUnitOfWork

# `response` is NULL only inside the transaction that claimed the key: the claim and the answer
# commit together, so no other transaction ever reads a claimed key without its answer.
SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    sku              text    PRIMARY KEY,
    name             text    NOT NULL,
    unit_price_cents bigint  NOT NULL CHECK (unit_price_cents >= 0),
    currency         text    NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    active           boolean NOT NULL DEFAULT true
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    customer_id text        NOT NULL,
    key         text        NOT NULL,
    fingerprint text        NOT NULL,
    order_id    text        NOT NULL,
    response    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, key)
);
"""


class PostgresProducts:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def prices(self, skus: Collection[str]) -> dict[str, Price]:
        rows = await self._conn.fetch(
            "SELECT sku, unit_price_cents, currency FROM products"
            " WHERE sku = ANY($1::text[]) AND active",
            list(skus),
        )
        return {r["sku"]: Price(r["unit_price_cents"], r["currency"]) for r in rows}


class PostgresIdempotencyKeys:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def claim(
        self, customer_id: str, key: str, fingerprint: str, order_id: str
    ) -> StoredRequest | None:
        # The primary key decides between concurrent duplicates: the second INSERT waits for
        # the first transaction, then either conflicts (read its answer) or, after a rollback,
        # takes the key itself.
        inserted = await self._conn.fetchval(
            "INSERT INTO idempotency_keys (customer_id, key, fingerprint, order_id)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            customer_id,
            key,
            fingerprint,
            order_id,
        )
        if inserted:
            return None
        row = await self._conn.fetchrow(
            "SELECT fingerprint, order_id, response FROM idempotency_keys"
            " WHERE customer_id = $1 AND key = $2",
            customer_id,
            key,
        )
        # the holder committed, and a key always commits together with its answer
        assert row is not None
        assert row["response"] is not None
        return StoredRequest(row["fingerprint"], row["order_id"], json.loads(row["response"]))

    async def record(self, customer_id: str, key: str, response: dict[str, Any]) -> None:
        await self._conn.execute(
            "UPDATE idempotency_keys SET response = $3::jsonb WHERE customer_id = $1 AND key = $2",
            customer_id,
            key,
            orjson.dumps(response).decode(),
        )


class PostgresCheckoutUnitOfWork(PostgresUnitOfWork):
    products: PostgresProducts
    idempotency: PostgresIdempotencyKeys

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.products = PostgresProducts(self.connection)
        self.idempotency = PostgresIdempotencyKeys(self.connection)
        return self


async def seed_products(pool: asyncpg.Pool, products: Sequence[Product]) -> None:
    """Insert the products that are missing; existing rows (maybe repriced) are kept."""
    await pool.executemany(
        "INSERT INTO products (sku, name, unit_price_cents, currency) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (sku) DO NOTHING",
        [(p.sku, p.name, p.unit_price_cents, p.currency) for p in products],
    )
