"""Outbox on PostgreSQL: messages recorded in the caller's transaction, published by the relay.

Rows are never deleted by the appender; the relay marks them sent and `prune_outbox` deletes
sent rows after a retention window. A statement-level trigger NOTIFYs the relay, and PostgreSQL
delivers the notification only when the transaction commits.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import orjson

from shared.envelope import Envelope
from shared.postgres.types import Connection

CHANNEL = "leadline_outbox"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    event_id   uuid        NOT NULL,
    value      bytea       NOT NULL,
    headers    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE OR REPLACE FUNCTION leadline_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$;
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION leadline_outbox_notify();
"""


class PostgresOutbox:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def append(self, topic: str, envelope: Envelope) -> None:
        headers = [[k, v.decode()] for k, v in envelope.headers()]
        await self._conn.execute(
            "INSERT INTO outbox (topic, key, event_id, value, headers)"
            " VALUES ($1, $2, $3, $4, $5::jsonb)",
            topic,
            envelope.key,
            envelope.event_id,
            envelope.to_bytes(),
            orjson.dumps(headers).decode(),
        )


async def prune_outbox(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Delete rows sent more than `older_than` ago; unsent rows are never touched, however old.
    Returns rows deleted."""
    status: str = await pool.execute(
        "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - $1::interval",
        older_than,
    )
    return int(status.split()[-1])
