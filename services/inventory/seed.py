"""Starting stock for local runs: the SKUs checkout sells, about a hundred units each."""

from __future__ import annotations

import asyncpg

from schemas.inventory.v1 import StockLevelChanged
from services.inventory.handlers import PRODUCER
from shared.envelope import Envelope, deterministic_id
from shared.postgres.outbox import PostgresOutbox

# the SKUs of checkout's local catalogue (services/checkout/catalogue.py), by name only
SEED_STOCK: dict[str, int] = {
    "TEA-001": 100,
    "TEA-002": 100,
    "TEA-003": 100,
    "CUP-001": 100,
    "POT-001": 40,
    "KETTLE-01": 25,
    "FILTER-100": 200,
}


async def seed_stock(pool: asyncpg.Pool, levels: dict[str, int], topic: str) -> list[str]:
    """Insert the SKUs not yet known (existing stock is never touched, so a restart does not
    reset it) and announce each new level; returns the SKUs inserted."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "INSERT INTO stock (sku, on_hand) SELECT * FROM unnest($1::text[], $2::int[])"
            " ON CONFLICT (sku) DO NOTHING RETURNING sku, on_hand",
            list(levels),
            list(levels.values()),
        )
        outbox = PostgresOutbox(conn)
        for row in rows:
            sku, on_hand = row["sku"], row["on_hand"]
            changed = StockLevelChanged(sku=sku, on_hand=on_hand, reserved=0, available=on_hand)
            await outbox.append(
                topic,
                Envelope.wrap(
                    changed,
                    key=sku,
                    producer=PRODUCER,
                    event_id=deterministic_id(PRODUCER, "seed", sku),
                ),
            )
    return [row["sku"] for row in rows]
