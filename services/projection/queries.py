"""The read side's queries, on the live views (the schemas a rebuild swaps in by name)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg
import orjson

from services.projection import orders, outcomes, sales, stock
from services.projection.store import qualified

_ORDER = qualified("SELECT * FROM {s}.orders WHERE order_id = $1", orders.VIEW.schema)
_TIMELINE = qualified(
    "SELECT at, step, detail FROM {s}.timeline WHERE order_id = $1 ORDER BY at, event_id",
    orders.VIEW.schema,
)
# newest first; the cursor is the last row's (placed_at, order_id), which the index orders by
_HISTORY = qualified(
    "SELECT order_id, status, placed_at, currency, total_cents, receipt_number FROM {s}.orders"
    " WHERE customer_id = $1 AND placed_at IS NOT NULL"
    " AND ($2::timestamptz IS NULL OR (placed_at, order_id) < ($2::timestamptz, $3::text))"
    " ORDER BY placed_at DESC, order_id DESC LIMIT $4",
    orders.VIEW.schema,
)
_STOCK = qualified(
    "SELECT sku, on_hand, reserved, available, as_of FROM {s}.stock WHERE sku = ANY($1::text[])"
    " ORDER BY sku",
    stock.VIEW.schema,
)
_SALES = qualified(
    "SELECT c.day, l.sku, l.currency, sum(l.quantity)::bigint AS quantity,"
    " sum(l.amount_cents)::bigint AS revenue_cents, count(*)::int AS orders"
    " FROM {s}.counted c JOIN {s}.order_lines l USING (order_id)"
    " WHERE c.day BETWEEN $1 AND $2 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    sales.VIEW.schema,
)
_OUTCOMES = qualified(
    "SELECT day, outcome, reason, count(*)::int AS orders FROM {s}.decided"
    " WHERE day BETWEEN $1 AND $2 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    outcomes.VIEW.schema,
)


async def order(pool: asyncpg.Pool, order_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(_ORDER, order_id)
    if row is None:
        return None
    found = dict(row)
    found["lines"] = orjson.loads(found["lines"]) if found["lines"] is not None else None
    return found


async def timeline(pool: asyncpg.Pool, order_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(_TIMELINE, order_id)]


async def history(
    pool: asyncpg.Pool, customer_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    placed_at, order_id = after if after else (None, None)
    rows = await pool.fetch(_HISTORY, customer_id, placed_at, order_id, limit)
    return [dict(r) for r in rows]


async def stock_levels(pool: asyncpg.Pool, skus: list[str]) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(_STOCK, skus)]


async def sales_per_day(pool: asyncpg.Pool, first: date, last: date) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(_SALES, first, last)]


async def outcomes_per_day(pool: asyncpg.Pool, first: date, last: date) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(_OUTCOMES, first, last)]


async def rebuilds(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT view, state, done, total FROM rebuilds")
    return [dict(r) for r in rows]
