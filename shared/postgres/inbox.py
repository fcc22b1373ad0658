"""Inbox on PostgreSQL: idempotency by primary key, in the handler's own transaction."""

from __future__ import annotations

import uuid

import asyncpg

from shared.postgres.types import Connection

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox (processed_at);
"""


class PostgresInbox:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def claim(self, consumer: str, event_id: uuid.UUID) -> bool:
        # A concurrent transaction claiming the same key blocks here until it commits, then
        # ON CONFLICT sees its row: a duplicate is a key conflict, never a lookup race.
        row = await self._conn.fetchval(
            "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            consumer,
            event_id,
        )
        return row is not None


async def prune_inbox(pool: asyncpg.Pool, older_than_days: int) -> int:
    """Delete inbox rows older than the retention window (keep it longer than the topics'
    retention, or a redelivered old event would be applied again). Returns rows deleted."""
    status: str = await pool.execute(
        "DELETE FROM inbox WHERE processed_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(status.split()[-1])
