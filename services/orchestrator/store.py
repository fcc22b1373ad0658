"""The saga view in PostgreSQL: every saga's latest state, for inspection across workers.

The faust Table (and its changelog) is the saga's truth; a worker only holds its own
partitions. This view is a copy every worker writes after its transitions, so any instance can
answer "where is order X" and "how many sagas are paying". A state only replaces one whose last
step is older, so a slow write from a worker that has since lost the partition cannot put an old
state back. (Not the history's length: a worker that restored the saga from its changelog may
reach the same end through fewer steps than the one before it — a duplicate it skipped, a
deadline it never saw — and its later states must still win. The workers' clocks are assumed to
agree within the time between two steps of one saga.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.orchestrator.saga import Saga

SCHEMA = """
CREATE TABLE IF NOT EXISTS sagas (
    order_id    text        PRIMARY KEY,
    status      text        NOT NULL,
    steps       integer     NOT NULL,
    deadline_at timestamptz,
    updated_at  timestamptz NOT NULL,
    state       jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS sagas_by_status ON sagas (status, updated_at DESC);
-- How far the saga agents have applied each source partition (the next offset to apply), kept
-- apart from the consumer group's offsets, which faust has committed past records no agent
-- applied: a worker taking a partition over reads what it skipped again from here.
CREATE TABLE IF NOT EXISTS saga_progress (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""

_UPSERT = """
INSERT INTO sagas (order_id, status, steps, deadline_at, updated_at, state)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[],
                     $6::jsonb[])
ON CONFLICT (order_id) DO UPDATE SET
    status = EXCLUDED.status, steps = EXCLUDED.steps, deadline_at = EXCLUDED.deadline_at,
    updated_at = EXCLUDED.updated_at, state = EXCLUDED.state
WHERE sagas.updated_at <= EXCLUDED.updated_at
"""


def _updated_at(saga: Saga) -> datetime | None:
    return saga.history[-1].at if saga.history else None


async def save(pool: asyncpg.Pool, sagas: Sequence[Saga]) -> None:
    """Upsert the latest state of each saga (one statement for the whole batch)."""
    if not sagas:
        return
    await pool.execute(
        _UPSERT,
        [s.order_id for s in sagas],
        [s.status.value for s in sagas],
        [len(s.history) for s in sagas],
        [s.deadline_at for s in sagas],
        [_updated_at(s) for s in sagas],
        [s.model_dump_json() for s in sagas],
    )


_PROGRESS = """
INSERT INTO saga_progress (topic, partition, next_offset)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
ON CONFLICT (topic, partition) DO UPDATE
SET next_offset = GREATEST(saga_progress.next_offset, EXCLUDED.next_offset)
"""


async def save_progress(pool: asyncpg.Pool, progress: dict[tuple[str, int], int]) -> None:
    """Only ever forward: a slow write of a worker that lost the partition cannot move it
    back (a stale value only makes a successor read a few records again)."""
    if not progress:
        return
    items = sorted(progress.items())
    await pool.execute(
        _PROGRESS, [t for (t, _), _ in items], [p for (_, p), _ in items], [n for _, n in items]
    )


async def progress(pool: asyncpg.Pool, topic: str, partition: int) -> int | None:
    found: int | None = await pool.fetchval(
        "SELECT next_offset FROM saga_progress WHERE topic = $1 AND partition = $2",
        topic,
        partition,
    )
    return found


async def load(pool: asyncpg.Pool, order_id: str) -> Saga | None:
    state = await pool.fetchval("SELECT state FROM sagas WHERE order_id = $1", order_id)
    return None if state is None else Saga.model_validate_json(state)


async def listed(pool: asyncpg.Pool, status: str | None, limit: int) -> list[Saga]:
    """Newest first, optionally of one status."""
    rows = await pool.fetch(
        "SELECT state FROM sagas WHERE ($1::text IS NULL OR status = $1)"
        " ORDER BY updated_at DESC, order_id LIMIT $2",
        status,
        limit,
    )
    return [Saga.model_validate_json(r["state"]) for r in rows]


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM sagas GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def all_sagas(dsn: str) -> list[Saga]:
    """Every saga in the view (for the replay check and its export)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT state FROM sagas ORDER BY order_id")
        return [Saga.model_validate_json(r["state"]) for r in rows]
    finally:
        await conn.close()
