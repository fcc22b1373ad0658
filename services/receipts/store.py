"""Receipts tables on PostgreSQL: order copies, receipts, the number counters, deliveries."""

from __future__ import annotations

from decimal import Decimal
from typing import Self

import asyncpg
import orjson

from services.receipts.domain import Line, Order, Receipt
from shared.postgres.types import Connection
from shared.postgres.uow import PostgresUnitOfWork

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id    text        PRIMARY KEY,
    customer_id text        NOT NULL,
    currency    text        NOT NULL,
    lines       jsonb       NOT NULL,
    placed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS receipt_counters (
    issuer text   PRIMARY KEY,
    next   bigint NOT NULL CHECK (next >= 1)
);
CREATE TABLE IF NOT EXISTS receipts (
    order_id       text          PRIMARY KEY REFERENCES orders (order_id),
    number         text          NOT NULL UNIQUE,
    issuer         text          NOT NULL,
    sequence       bigint        NOT NULL,
    customer_id    text          NOT NULL,
    currency       text          NOT NULL,
    lines          jsonb         NOT NULL,
    subtotal_cents bigint        NOT NULL CHECK (subtotal_cents >= 0),
    tax_rate       numeric(6, 4) NOT NULL,
    tax_cents      bigint        NOT NULL CHECK (tax_cents >= 0),
    total_cents    bigint        NOT NULL CHECK (total_cents = subtotal_cents + tax_cents),
    issued_at      timestamptz   NOT NULL,
    UNIQUE (issuer, sequence)
);
CREATE TABLE IF NOT EXISTS deliveries (
    receipt_number  text        PRIMARY KEY REFERENCES receipts (number),
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at)
    WHERE status = 'pending';
"""

_RECEIPT_COLUMNS = (
    "r.number, r.order_id, r.customer_id, r.currency, r.lines, r.subtotal_cents, r.tax_rate,"
    " r.tax_cents, r.total_cents, r.issued_at"
)


def _dump_lines(lines: tuple[Line, ...]) -> str:
    return orjson.dumps(
        [
            {
                "sku": x.sku,
                "quantity": x.quantity,
                "unit_price_cents": x.unit_price_cents,
                "line_total_cents": x.line_total_cents,
            }
            for x in lines
        ]
    ).decode()


def _load_lines(raw: str) -> tuple[Line, ...]:
    return tuple(Line(**x) for x in orjson.loads(raw))


def receipt_from_row(row: asyncpg.Record) -> Receipt:
    return Receipt(
        number=row["number"],
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        currency=row["currency"],
        lines=_load_lines(row["lines"]),
        subtotal_cents=row["subtotal_cents"],
        tax_rate=Decimal(row["tax_rate"]),
        tax_cents=row["tax_cents"],
        total_cents=row["total_cents"],
        issued_at=row["issued_at"],
    )


class PostgresReceiptStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add_order(self, order: Order) -> None:
        await self._conn.execute(
            "INSERT INTO orders (order_id, customer_id, currency, lines)"
            " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (order_id) DO NOTHING",
            order.order_id,
            order.customer_id,
            order.currency,
            _dump_lines(order.lines),
        )

    async def order(self, order_id: str) -> Order | None:
        row = await self._conn.fetchrow(
            "SELECT order_id, customer_id, currency, lines FROM orders"
            " WHERE order_id = $1 FOR UPDATE",
            order_id,
        )
        if row is None:
            return None
        return Order(
            row["order_id"], row["customer_id"], row["currency"], _load_lines(row["lines"])
        )

    async def receipt(self, order_id: str) -> Receipt | None:
        row = await self._conn.fetchrow(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts r WHERE r.order_id = $1", order_id
        )
        return None if row is None else receipt_from_row(row)

    async def next_sequence(self, issuer: str) -> int:
        # The counter row stays locked until commit, so issuances queue here one at a time; a
        # sequence (unlike this row) would leave a hole behind every rolled-back transaction.
        sequence: int = await self._conn.fetchval(
            "INSERT INTO receipt_counters (issuer, next) VALUES ($1, 2)"
            " ON CONFLICT (issuer) DO UPDATE SET next = receipt_counters.next + 1"
            " RETURNING next - 1",
            issuer,
        )
        return sequence

    async def add_receipt(self, receipt: Receipt, issuer: str, sequence: int) -> None:
        await self._conn.execute(
            "INSERT INTO receipts (order_id, number, issuer, sequence, customer_id, currency,"
            " lines, subtotal_cents, tax_rate, tax_cents, total_cents, issued_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12)",
            receipt.order_id,
            receipt.number,
            issuer,
            sequence,
            receipt.customer_id,
            receipt.currency,
            _dump_lines(receipt.lines),
            receipt.subtotal_cents,
            receipt.tax_rate,
            receipt.tax_cents,
            receipt.total_cents,
            receipt.issued_at,
        )
        await self._conn.execute(
            "INSERT INTO deliveries (receipt_number) VALUES ($1)", receipt.number
        )


class PostgresReceiptsUnitOfWork(PostgresUnitOfWork):
    """The backbone's unit of work plus `receipts`, on the same connection and transaction."""

    receipts: PostgresReceiptStore

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.receipts = PostgresReceiptStore(self.connection)
        return self


async def receipt_with_delivery(pool: asyncpg.Pool, order_id: str) -> tuple[Receipt, str] | None:
    """A committed receipt and its delivery status, for reads."""
    row = await pool.fetchrow(
        f"SELECT {_RECEIPT_COLUMNS}, d.status FROM receipts r"
        " JOIN deliveries d ON d.receipt_number = r.number WHERE r.order_id = $1",
        order_id,
    )
    return None if row is None else (receipt_from_row(row), row["status"])


async def claim_due_deliveries(
    pool: asyncpg.Pool, limit: int, lease_seconds: float
) -> list[tuple[Receipt, int]]:
    """Take up to `limit` due deliveries (with their attempt number) for `lease_seconds`:
    pushing `next_attempt_at` out is the lease, so another instance skips them meanwhile and a
    process that dies mid-send leaves them due again once the lease runs out."""
    rows = await pool.fetch(
        "UPDATE deliveries d SET attempts = d.attempts + 1,"
        " next_attempt_at = now() + make_interval(secs => $2)"
        " FROM receipts r WHERE r.number = d.receipt_number AND d.receipt_number IN ("
        "   SELECT receipt_number FROM deliveries WHERE status = 'pending'"
        "   AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1"
        "   FOR UPDATE SKIP LOCKED)"
        f" RETURNING {_RECEIPT_COLUMNS}, d.attempts",
        limit,
        lease_seconds,
    )
    return [(receipt_from_row(row), row["attempts"]) for row in rows]


async def mark_delivered(pool: asyncpg.Pool, receipt_number: str) -> None:
    await pool.execute(
        "UPDATE deliveries SET status = 'delivered', delivered_at = now(), last_error = NULL"
        " WHERE receipt_number = $1",
        receipt_number,
    )


async def mark_failed(
    pool: asyncpg.Pool, receipt_number: str, error: str, retry_in_seconds: float
) -> None:
    await pool.execute(
        "UPDATE deliveries SET last_error = $2,"
        " next_attempt_at = now() + make_interval(secs => $3)"
        " WHERE receipt_number = $1 AND status = 'pending'",
        receipt_number,
        error[:2000],
        retry_in_seconds,
    )
