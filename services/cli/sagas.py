"""The orchestrator's saga view, read from its database (`ORCHESTRATOR_DATABASE_URL`).

Every orchestrator worker writes each saga's latest state there (`sagas`: status, deadline,
the state as JSON). The CLI reads it as a tolerant reader: the models below name only the
fields it shows and ignore the rest, so the orchestrator may add fields without breaking it,
and no service code is imported (services never import each other).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from services.cli.errors import CliError, postgres_unreachable

_READER = ConfigDict(frozen=True, extra="ignore")


class SentCommand(BaseModel):
    model_config = _READER

    step: str
    topic: str
    type: str
    event_id: str


class Step(BaseModel):
    model_config = _READER

    at: datetime
    message_id: str
    type: str
    status: str  # the saga's status after it
    note: str = ""
    commands: list[SentCommand] = []


class Saga(BaseModel):
    model_config = _READER

    order_id: str
    customer_id: str | None = None
    status: str
    reason: str | None = None
    deadline_at: datetime | None = None
    overdue: bool = False
    payment_id: str | None = None
    receipt_number: str | None = None
    awaiting: list[str] = []
    history: list[Step] = []

    @property
    def updated_at(self) -> datetime | None:
        return self.history[-1].at if self.history else None


@contextlib.asynccontextmanager
async def _view(dsn: str) -> AsyncIterator[Any]:
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise postgres_unreachable(dsn, exc) from None
    try:
        yield conn
    except asyncpg.UndefinedTableError:
        raise CliError(
            "no saga view in that database: is ORCHESTRATOR_DATABASE_URL the orchestrator's?"
        ) from None
    finally:
        await conn.close()


async def one(dsn: str, order_id: str) -> Saga:
    async with _view(dsn) as conn:
        state = await conn.fetchval("SELECT state FROM sagas WHERE order_id = $1", order_id)
    if state is None:
        raise CliError(f"no saga for order {order_id!r}")
    return Saga.model_validate_json(state)


async def listed(dsn: str, state: str | None, limit: int) -> tuple[dict[str, int], list[Saga]]:
    """Every status's count, and the newest sagas (of `state`, if given)."""
    async with _view(dsn) as conn:
        counts = await conn.fetch("SELECT status, count(*) AS n FROM sagas GROUP BY status")
        rows = await conn.fetch(
            "SELECT state FROM sagas WHERE ($1::text IS NULL OR status = $1)"
            " ORDER BY updated_at DESC, order_id LIMIT $2",
            state,
            limit,
        )
    return (
        {r["status"]: r["n"] for r in sorted(counts, key=lambda r: r["status"])},
        [Saga.model_validate_json(r["state"]) for r in rows],
    )
