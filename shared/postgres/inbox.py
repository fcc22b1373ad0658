"""Inbox on PostgreSQL: idempotency by primary key, in the handler's own transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared.ports import Claim, InboxEntry
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
        # Sorted by key, so two transactions claiming overlapping keys lock them in one order
        # and wait for each other instead of deadlocking. A key twice in one statement is
        # inserted once (DO NOTHING skips the second).
        self._insert_many = (
            f"INSERT INTO {table} (consumer, scope, event_id, fingerprint)"
            " SELECT $1, s, e, f FROM unnest($2::text[], $3::uuid[], $4::text[]) AS m(s, e, f)"
            " ORDER BY s, e ON CONFLICT DO NOTHING RETURNING scope, event_id"
        )
        self._select_many = (
            f"SELECT scope, event_id, fingerprint FROM {table} WHERE consumer = $1"
            " AND (scope, event_id) IN (SELECT * FROM unnest($2::text[], $3::uuid[]))"
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

    async def claim_many(self, consumer: str, messages: Sequence[InboxEntry]) -> list[Claim]:
        if len(messages) <= 1:  # the plain statement: cheaper for the server to plan
            return [
                await self.claim(consumer, m.event_id, scope=m.scope, fingerprint=m.fingerprint)
                for m in messages
            ]
        scopes = [m.scope for m in messages]
        ids = [m.event_id for m in messages]
        fingerprints = [m.fingerprint for m in messages]
        rows = await self._conn.fetch(self._insert_many, consumer, scopes, ids, fingerprints)
        new = {(r["scope"], r["event_id"]) for r in rows}
        first: dict[tuple[str, uuid.UUID], str] = {}
        if len(new) < len(messages):  # claimed before, or twice in this batch
            earlier = await self._conn.fetch(self._select_many, consumer, scopes, ids)
            first = {(r["scope"], r["event_id"]): r["fingerprint"] for r in earlier}
        claims: list[Claim] = []
        for m in messages:
            key = (m.scope, m.event_id)
            if key in new:
                new.discard(key)  # its first occurrence here is the claim
                first[key] = m.fingerprint
                claims.append(Claim.NEW)
            else:
                same = first[key] == m.fingerprint
                claims.append(Claim.DUPLICATE if same else Claim.COLLISION)
        return claims


async def prune_inbox(pool: asyncpg.Pool, older_than_days: int, table: str = "inbox") -> int:
    """Delete inbox rows older than the retention window (keep it longer than the topics'
    retention, or a redelivered old event would be applied again). Returns rows deleted."""
    status: str = await pool.execute(
        f"DELETE FROM {table} WHERE processed_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(status.split()[-1])
