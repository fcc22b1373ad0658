"""Inventory tables on PostgreSQL and the unit of work that binds them to the runner's
transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self, cast

import asyncpg
import orjson

from services.inventory.domain import Level, Reservation, Shortage, Status
from shared.postgres.types import Connection
from shared.postgres.uow import PostgresUnitOfWork

# The CHECKs restate the domain invariant so that no code path, however buggy, can commit an
# oversell: reserved never exceeds on_hand, and nothing goes negative.
SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku        text        PRIMARY KEY,
    on_hand    integer     NOT NULL CHECK (on_hand >= 0),
    reserved   integer     NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (reserved <= on_hand)
);
CREATE TABLE IF NOT EXISTS reservations (
    order_id    text        PRIMARY KEY,
    status      text        NOT NULL CHECK (status IN ('reserved', 'failed', 'released')),
    reason      text,
    shortages   jsonb       NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz
);
CREATE TABLE IF NOT EXISTS reservation_lines (
    order_id text    NOT NULL REFERENCES reservations (order_id),
    sku      text    NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);
CREATE TABLE IF NOT EXISTS shipments (
    shipment_id text        PRIMARY KEY,
    sku         text        NOT NULL,
    quantity    integer     NOT NULL CHECK (quantity > 0),
    received_at timestamptz NOT NULL DEFAULT now()
);
"""


def _level(row: asyncpg.Record) -> Level:
    return Level(row["sku"], row["on_hand"], row["reserved"])


class PostgresStockStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def lock_levels(self, skus: Sequence[str]) -> dict[str, Level]:
        # LockRows runs above the Sort, so rows are locked in SKU order: two orders over the
        # same SKUs queue behind each other instead of deadlocking.
        rows = await self._conn.fetch(
            "SELECT sku, on_hand, reserved FROM stock WHERE sku = ANY($1::text[])"
            " ORDER BY sku FOR UPDATE",
            list(skus),
        )
        return {row["sku"]: _level(row) for row in rows}

    async def save_levels(self, levels: Sequence[Level]) -> None:
        await self._conn.execute(
            "UPDATE stock SET on_hand = l.on_hand, reserved = l.reserved, updated_at = now()"
            " FROM unnest($1::text[], $2::int[], $3::int[]) AS l(sku, on_hand, reserved)"
            " WHERE stock.sku = l.sku",
            [lv.sku for lv in levels],
            [lv.on_hand for lv in levels],
            [lv.reserved for lv in levels],
        )

    async def add_on_hand(self, sku: str, quantity: int) -> Level:
        # Relative, in one statement: two arrivals of a SKU nobody has seen yet cannot both
        # insert an absolute value and lose one of them.
        row = await self._conn.fetchrow(
            "INSERT INTO stock (sku, on_hand) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE"
            " SET on_hand = stock.on_hand + EXCLUDED.on_hand, updated_at = now()"
            " RETURNING sku, on_hand, reserved",
            sku,
            quantity,
        )
        assert row is not None
        return _level(row)

    async def reservation(self, order_id: str) -> Reservation | None:
        row = await self._conn.fetchrow(
            "SELECT status, reason, shortages FROM reservations WHERE order_id = $1 FOR UPDATE",
            order_id,
        )
        if row is None:
            return None
        lines = await self._conn.fetch(
            "SELECT sku, quantity FROM reservation_lines WHERE order_id = $1 ORDER BY sku",
            order_id,
        )
        shortages = tuple(Shortage(**s) for s in orjson.loads(row["shortages"]))
        return Reservation(
            order_id,
            cast(Status, row["status"]),
            tuple((r["sku"], r["quantity"]) for r in lines),
            row["reason"],
            shortages,
        )

    async def add_reservation(self, reservation: Reservation) -> None:
        shortages = [
            {"sku": s.sku, "requested": s.requested, "available": s.available}
            for s in reservation.shortages
        ]
        await self._conn.execute(
            "INSERT INTO reservations (order_id, status, reason, shortages, released_at)"
            " VALUES ($1, $2, $3, $4::jsonb, CASE WHEN $2 = 'released' THEN now() END)",
            reservation.order_id,
            reservation.status,
            reservation.reason,
            orjson.dumps(shortages).decode(),
        )
        await self._conn.execute(
            "INSERT INTO reservation_lines (order_id, sku, quantity)"
            " SELECT $1, sku, quantity FROM unnest($2::text[], $3::int[]) AS l(sku, quantity)",
            reservation.order_id,
            [sku for sku, _ in reservation.lines],
            [q for _, q in reservation.lines],
        )

    async def mark_released(self, order_id: str) -> None:
        await self._conn.execute(
            "UPDATE reservations SET status = 'released', released_at = now() WHERE order_id = $1",
            order_id,
        )

    async def add_shipment(self, shipment_id: str, sku: str, quantity: int) -> bool:
        inserted = await self._conn.fetchval(
            "INSERT INTO shipments (shipment_id, sku, quantity) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            shipment_id,
            sku,
            quantity,
        )
        return inserted is not None


class PostgresInventoryUnitOfWork(PostgresUnitOfWork):
    """The backbone's unit of work plus `stock`, on the same connection and transaction."""

    stock: PostgresStockStore

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.stock = PostgresStockStore(self.connection)
        return self


async def stock_levels(pool: asyncpg.Pool, sku: str | None = None) -> list[Level]:
    """Committed levels for reads (no locks): one SKU, or all of them in SKU order."""
    rows = await pool.fetch(
        "SELECT sku, on_hand, reserved FROM stock WHERE $1::text IS NULL OR sku = $1 ORDER BY sku",
        sku,
    )
    return [_level(row) for row in rows]
