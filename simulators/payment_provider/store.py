"""The simulator's tables on PostgreSQL: one payment per order and the answers waiting to be
sent, written in the consumer's transaction (with its inbox row), read by the publisher."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Self, cast

import asyncpg
import orjson

from shared.envelope import Envelope
from shared.observability.tracing import current_carrier
from shared.postgres.types import Connection
from shared.postgres.uow import PostgresUnitOfWork
from simulators.payment_provider.domain import Payment, Status

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    order_id     text        PRIMARY KEY,
    status       text        NOT NULL
                 CHECK (status IN ('unanswered', 'authorized', 'declined', 'voided')),
    customer_id  text,
    amount_cents bigint,
    currency     text,
    payment_id   text,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- One row per sending: a repeated request queues its answer again, under the same event id.
CREATE TABLE IF NOT EXISTS answers (
    id         bigserial   PRIMARY KEY,
    event_id   uuid        NOT NULL,
    order_id   text        NOT NULL,
    type       text        NOT NULL,
    topic      text        NOT NULL,
    value      bytea       NOT NULL,
    due_at     timestamptz NOT NULL,
    sent_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    trace      jsonb       NOT NULL DEFAULT '{}'
);
-- the W3C trace context of the request being answered (databases made before it: none)
ALTER TABLE answers ADD COLUMN IF NOT EXISTS trace jsonb NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS answers_due ON answers (due_at, id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS answers_order ON answers (order_id);
"""


def _payment(row: asyncpg.Record) -> Payment:
    return Payment(
        order_id=row["order_id"],
        status=cast(Status, row["status"]),
        customer_id=row["customer_id"],
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        payment_id=row["payment_id"],
        reason=row["reason"],
    )


class PostgresPaymentStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def payment(self, order_id: str) -> Payment | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM payments WHERE order_id = $1 FOR UPDATE", order_id
        )
        return None if row is None else _payment(row)

    async def save(self, payment: Payment) -> None:
        await self._conn.execute(
            "INSERT INTO payments (order_id, status, customer_id, amount_cents, currency,"
            " payment_id, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status,"
            " customer_id = EXCLUDED.customer_id, amount_cents = EXCLUDED.amount_cents,"
            " currency = EXCLUDED.currency, payment_id = EXCLUDED.payment_id,"
            " reason = EXCLUDED.reason, updated_at = now()",
            payment.order_id,
            payment.status,
            payment.customer_id,
            payment.amount_cents,
            payment.currency,
            payment.payment_id,
            payment.reason,
        )

    async def schedule(self, topic: str, answer: Envelope, latency_ms: int) -> None:
        # GREATEST: a shorter latency set meanwhile must not let a later answer of the order
        # (a void) overtake an earlier one still waiting (its authorization)
        # the answer continues the trace of the request it answers (the current span's)
        await self._conn.execute(
            "INSERT INTO answers (event_id, order_id, type, topic, value, due_at, trace)"
            " SELECT $1, $2, $3, $4, $5, GREATEST(now() + $6 * interval '1 millisecond',"
            " (SELECT max(due_at) FROM answers WHERE order_id = $2 AND sent_at IS NULL)),"
            " $7::jsonb",
            answer.event_id,
            answer.key,
            answer.type,
            topic,
            answer.to_bytes(),
            latency_ms,
            orjson.dumps(current_carrier()).decode(),
        )


class PostgresSimulatorUnitOfWork(PostgresUnitOfWork):
    """The backbone's unit of work plus `payments`, on the same connection and transaction."""

    payments: PostgresPaymentStore

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.payments = PostgresPaymentStore(self.connection)
        return self


@dataclass(frozen=True)
class DueAnswer:
    id: int
    topic: str
    key: str
    value: bytes
    trace: dict[str, str]  # W3C fields; empty when the request carried no trace


async def due_answers(pool: asyncpg.Pool, limit: int) -> list[DueAnswer]:
    """Unsent answers whose time has come, in the order they fell due."""
    rows = await pool.fetch(
        "SELECT id, topic, order_id, value, trace FROM answers"
        " WHERE sent_at IS NULL AND due_at <= clock_timestamp() ORDER BY due_at, id LIMIT $1",
        limit,
    )
    return [
        DueAnswer(r["id"], r["topic"], r["order_id"], bytes(r["value"]), orjson.loads(r["trace"]))
        for r in rows
    ]


async def mark_sent(pool: asyncpg.Pool, ids: list[int]) -> None:
    await pool.execute(
        "UPDATE answers SET sent_at = clock_timestamp() WHERE id = ANY($1::bigint[])", ids
    )


@dataclass(frozen=True)
class AnswerRecord:
    event_id: uuid.UUID
    type: str
    due_at: datetime
    sent_at: datetime | None


async def payment_view(
    pool: asyncpg.Pool, order_id: str
) -> tuple[Payment, list[AnswerRecord]] | None:
    """Committed state for reads (no locks): the order's payment and every answer queued."""
    row = await pool.fetchrow("SELECT * FROM payments WHERE order_id = $1", order_id)
    if row is None:
        return None
    answers = await pool.fetch(
        "SELECT event_id, type, due_at, sent_at FROM answers WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    return _payment(row), [
        AnswerRecord(a["event_id"], a["type"], a["due_at"], a["sent_at"]) for a in answers
    ]
