"""Inbox on PostgreSQL: idempotency by primary key, in the handler's own transaction."""

from __future__ import annotations

import uuid

import asyncpg

from shared.ports import Claim
from shared.postgres.types import Connection


def inbox_ddl(table: str, index: str) -> str:
    """An inbox table named `table` (schema-qualified or not) with its `index` on age."""
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    consumer     text        NOT NULL,
    scope        text        NOT NULL DEFAULT '',
    event_id     uuid        NOT NULL,
    fingerprint  text        NOT NULL DEFAULT '',
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, scope, event_id)
);
CREATE INDEX IF NOT EXISTS {index} ON {table} (processed_at);
"""


SCHEMA = (
    inbox_ddl("inbox", "inbox_processed_at")
    + """
-- databases made before scopes: widen the key (their rows keep the empty scope)
ALTER TABLE inbox ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT '';
ALTER TABLE inbox ADD COLUMN IF NOT EXISTS fingerprint text NOT NULL DEFAULT '';
DO $$ BEGIN
    IF (SELECT cardinality(conkey) FROM pg_constraint
        WHERE conrelid = 'inbox'::regclass AND contype = 'p') = 2 THEN
        ALTER TABLE inbox DROP CONSTRAINT inbox_pkey, ADD PRIMARY KEY (consumer, scope, event_id);
    END IF;
END $$;
"""
)


class PostgresInbox:
    """`table` (schema-qualified when it is not the default `inbox`) holds the claims: a service
    whose read models are rebuilt one at a time keeps one inbox per model, swapped with it."""

    def __init__(self, conn: Connection, table: str = "inbox") -> None:
        self._conn = conn
        self._insert = (
            f"INSERT INTO {table} (consumer, scope, event_id, fingerprint) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING RETURNING 1"
        )
        self._select = (
            f"SELECT fingerprint FROM {table} WHERE consumer = $1 AND scope = $2 AND event_id = $3"
        )

    async def claim(
        self, consumer: str, event_id: uuid.UUID, *, scope: str, fingerprint: str
    ) -> Claim:
        # A concurrent transaction claiming the same key blocks here until it commits, then
        # ON CONFLICT sees its row: a duplicate is a key conflict, never a lookup race.
        row = await self._conn.fetchval(
            self._insert,
            consumer,
            scope,
            event_id,
            fingerprint,
        )
        if row is not None:
            return Claim.NEW
        first = await self._conn.fetchval(
            self._select,
            consumer,
            scope,
            event_id,
        )
        return Claim.DUPLICATE if first == fingerprint else Claim.COLLISION


async def prune_inbox(pool: asyncpg.Pool, older_than_days: int, table: str = "inbox") -> int:
    """Delete inbox rows older than the retention window (keep it longer than the topics'
    retention, or a redelivered old event would be applied again). Returns rows deleted."""
    status: str = await pool.execute(
        f"DELETE FROM {table} WHERE processed_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(status.split()[-1])
