"""PostgreSQL adapters of the backbone's ports (asyncpg)."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from shared.observability.logging import get_logger
from shared.postgres.eventstore import SCHEMA as EVENTSTORE_SCHEMA
from shared.postgres.inbox import SCHEMA as INBOX_SCHEMA
from shared.postgres.outbox import SCHEMA as OUTBOX_SCHEMA
from shared.retry import backoff_delay

BACKBONE_SCHEMA = EVENTSTORE_SCHEMA + OUTBOX_SCHEMA + INBOX_SCHEMA

_log = get_logger(__name__)


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    assert pool is not None
    return pool


async def install_schema(
    pool: asyncpg.Pool, *extra: str, lock_timeout: float = 0.5, give_up_after: float = 120.0
) -> None:
    """Create the backbone's tables (and a service's own `extra` DDL) if missing. Idempotent;
    the advisory lock keeps two services starting at once from racing on CREATE.

    Safe next to running instances of the same service: the DDL locks table after table
    (`CREATE INDEX IF NOT EXISTS` and `ALTER TABLE` lock even when there is nothing to do)
    while their transactions lock inbox, events and outbox in their own order, a deadlock in
    the making. Each lock wait is cut short after `lock_timeout` seconds, before PostgreSQL's
    deadlock check (deadlock_timeout, 1 s by default) can pick the running transaction as its
    victim; the start-up then rolls back, releasing what it held, and tries again with backoff,
    for up to `give_up_after` seconds."""
    deadline = time.monotonic() + give_up_after
    attempt = 0
    while True:
        attempt += 1
        try:
            async with pool.acquire() as conn, conn.transaction():
                # taken before the timeout applies: another start-up's DDL is worth waiting for
                await conn.execute("SELECT pg_advisory_xact_lock(72231)")
                await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
                await conn.execute(BACKBONE_SCHEMA + "".join(extra))
            return
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            if time.monotonic() >= deadline:
                raise
            delay = backoff_delay(attempt, 0.05, 2.0)
            _log.info("schema install waits for live traffic", attempt=attempt, error=repr(exc))
            await asyncio.sleep(delay)
