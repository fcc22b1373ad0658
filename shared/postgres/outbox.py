"""Outbox on PostgreSQL: messages recorded in the caller's transaction, published by the relay.

Rows are never deleted by the appender; the relay marks them sent and `prune_outbox` deletes
sent rows after a retention window. A statement-level trigger NOTIFYs the relay, and PostgreSQL
delivers the notification only when the transaction commits. A row's headers are the
envelope's plus the W3C trace context of the code that wrote it (observability/tracing.py).

A row Kafka refuses for good is parked (`parked_at`, `parked_reason`) until an operator retries
or drops it (`python -m shared.relay parked`); a dropped row keeps `sent_at` NULL and gets
`dropped_at`. Every query names its rows with `PENDING` or `PARKED`, which imply the
predicates of the partial indexes `outbox_unsent` and `outbox_parked`, so both stay usable.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import orjson

from shared.envelope import Envelope
from shared.observability.tracing import with_current_context
from shared.postgres.types import Connection

CHANNEL = "leadline_outbox"

# waiting to be published (rows held behind a parked row of their key included)
PENDING = "sent_at IS NULL AND parked_at IS NULL"
# refused for good and not dropped: holds back every unsent row of its topic and key
PARKED = "sent_at IS NULL AND parked_at IS NOT NULL AND dropped_at IS NULL"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text        NOT NULL,
    key           text        NOT NULL,
    event_id      uuid        NOT NULL,
    value         bytea       NOT NULL,
    headers       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    parked_at     timestamptz,
    parked_reason text,
    dropped_at    timestamptz
);
-- databases created before parking existed
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS parked_at timestamptz,
    ADD COLUMN IF NOT EXISTS parked_reason text, ADD COLUMN IF NOT EXISTS dropped_at timestamptz;
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_parked ON outbox (topic, key) WHERE {PARKED};
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
        # the trace context current now (the request or handler writing the row) is stored
        # with it: the relay publishes it however late, so the trace survives the wait
        headers = [[k, v.decode()] for k, v in with_current_context(envelope.headers())]
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
    """Delete rows sent or dropped more than `older_than` ago; unsent rows, parked ones
    included, are never touched, however old. Returns rows deleted."""
    status: str = await pool.execute(
        "DELETE FROM outbox WHERE sent_at < now() - $1::interval"
        " OR dropped_at < now() - $1::interval",
        older_than,
    )
    return int(status.split()[-1])
