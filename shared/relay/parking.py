"""Parked outbox rows: what the relay set aside because Kafka refuses it for good (batch.py).

Order is kept per topic and key (the same order id on another topic is another stream), so a
parked row holds back every other unsent row of its topic and key, and nothing else, until an
operator retries it (once the cause is fixed) or drops it. A dropped row is never sent; it
stays, `sent_at` NULL and `dropped_at` set, for inspection until housekeeping prunes it like a
sent row, and the rows it held go out.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.postgres.outbox import CHANNEL, PARKED
from shared.relay.batch import DB_TIMEOUT


def parked_note(count: int) -> str:
    """What an operator is told while rows are parked: their keys' messages stop until someone
    retries or drops them."""
    rows = "row is" if count == 1 else "rows are"
    return (
        f"{count} outbox {rows} parked (Kafka refused them for good);"
        " see `python -m shared.relay parked list`"
    )


async def count_parked(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        f"SELECT count(*) FROM outbox WHERE {PARKED}", timeout=DB_TIMEOUT
    )
    return count


async def parked_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every parked row with its reason, size and how many rows of its key it holds back."""
    return await pool.fetch(
        "SELECT id, topic, key, event_id, created_at, parked_at, parked_reason,"
        " octet_length(value) AS bytes,"
        " (SELECT count(*) FROM outbox h WHERE h.topic = p.topic AND h.key = p.key"
        f"   AND h.sent_at IS NULL AND h.parked_at IS NULL) AS held"
        f" FROM outbox p WHERE {PARKED} ORDER BY id",
        timeout=DB_TIMEOUT,
    )


async def retry_parked(pool: asyncpg.Pool, ids: Sequence[int] | None) -> list[int]:
    """Put parked rows (`ids`, or all for None) back in line; return the ids released. The
    relay is woken and sends each before the rows of its key that it held."""
    return await _settle(
        pool, "parked_at = NULL, parked_reason = NULL", "$1::bigint[] IS NULL OR id = ANY($1)", ids
    )


async def drop_parked(pool: asyncpg.Pool, ids: Sequence[int]) -> list[int]:
    """Give up parked rows: never sent, kept for inspection; return the ids dropped. The rows
    they held go out."""
    return await _settle(pool, "dropped_at = now()", "id = ANY($1::bigint[])", ids)


async def _settle(
    pool: asyncpg.Pool, assignments: str, which: str, ids: Sequence[int] | None
) -> list[int]:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"UPDATE outbox SET {assignments} WHERE ({which}) AND {PARKED} RETURNING id",
            None if ids is None else list(ids),
            timeout=DB_TIMEOUT,
        )
        # delivered at commit, like the insert trigger's: the relay need not wait for its poll
        await conn.execute("SELECT pg_notify($1, '')", CHANNEL, timeout=DB_TIMEOUT)
    return sorted(r["id"] for r in rows)
