"""PostgreSQL adapters of the backbone's ports (asyncpg)."""

from __future__ import annotations

import asyncpg

from shared.postgres.eventstore import SCHEMA as EVENTSTORE_SCHEMA
from shared.postgres.inbox import SCHEMA as INBOX_SCHEMA
from shared.postgres.outbox import SCHEMA as OUTBOX_SCHEMA

BACKBONE_SCHEMA = EVENTSTORE_SCHEMA + OUTBOX_SCHEMA + INBOX_SCHEMA


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    assert pool is not None
    return pool


async def install_schema(pool: asyncpg.Pool, *extra: str) -> None:
    """Create the backbone's tables (and a service's own `extra` DDL) if missing. Idempotent;
    the advisory lock keeps two services starting at once from racing on CREATE."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(72231)")
        await conn.execute(BACKBONE_SCHEMA + "".join(extra))
