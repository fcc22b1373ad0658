"""Sagas over HTTP, for operators (admin scope): one saga's steps, and sagas by status.

No `from __future__ import annotations` here: the route dependencies are built inside
`router()`, and FastAPI can only resolve string annotations against module globals.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from schemas.fields import Id
from services.orchestrator import store
from services.orchestrator.saga import Saga, Status
from shared.auth import Principal


class StepView(BaseModel):
    at: datetime
    message_id: str = Field(description="event id of the message that caused the step")
    type: str
    status: Status = Field(description="the saga's status after it")
    note: str = Field(description='"ignored", "failed: …", or empty')
    commands: list[str] = Field(description="the commands it sent, by type")


class SagaView(BaseModel):
    order_id: str
    status: Status
    reason: str | None = Field(description="why it is rejecting, rejected, cancelled or failed")
    deadline_at: datetime | None = Field(description="when the current wait runs out")
    overdue: bool = Field(description="the receipt did not come in time")
    payment_id: str | None
    receipt_number: str | None
    awaiting: list[str] = Field(description="compensation outcomes still awaited")
    steps: list[StepView]

    @classmethod
    def of(cls, saga: Saga) -> "SagaView":
        return cls(
            order_id=saga.order_id,
            status=saga.status,
            reason=saga.reason,
            deadline_at=saga.deadline_at,
            overdue=saga.overdue,
            payment_id=saga.payment_id,
            receipt_number=saga.receipt_number,
            awaiting=sorted(saga.awaiting),
            steps=[
                StepView(
                    at=s.at,
                    message_id=s.message_id,
                    type=s.type,
                    status=s.status,
                    note=s.note,
                    commands=[c.type for c in s.commands],
                )
                for s in saga.history
            ],
        )


class SagaSummary(BaseModel):
    order_id: str
    status: Status
    reason: str | None
    deadline_at: datetime | None
    updated_at: datetime | None


class SagaList(BaseModel):
    counts: dict[str, int] = Field(description="every saga in the view, by status")
    sagas: list[SagaSummary] = Field(description="newest first")


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def router(authenticate: Callable[..., Awaitable[Principal]]) -> APIRouter:
    routes = APIRouter(tags=["sagas"])

    async def admin(caller: Annotated[Principal, Depends(authenticate)]) -> Principal:
        # a dependency, so a customer's token is refused before anything else is looked at
        if not caller.is_admin:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "sagas are for the admin scope")
        return caller

    Caller = Annotated[Principal, Depends(admin)]
    Pool = Annotated[asyncpg.Pool, Depends(_pool)]
    forbidden: dict[int | str, dict[str, Any]] = {
        403: {"description": "the token lacks the admin scope"}
    }

    @routes.get(
        "/sagas/{order_id}",
        summary="One order's saga",
        responses={**forbidden, 404: {"description": "no saga for this order (yet)"}},
    )
    async def get_saga(order_id: Id, caller: Caller, pool: Pool) -> SagaView:
        """Where the order's saga stands: status, pending deadline, and every step with its
        time, the message that caused it and the commands it sent."""
        saga = await store.load(pool, order_id)
        if saga is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no saga for order {order_id!r}")
        return SagaView.of(saga)

    @routes.get("/sagas", summary="Sagas by status", responses=forbidden)
    async def list_sagas(
        caller: Caller,
        pool: Pool,
        state: Annotated[Status | None, Query(description="only sagas in this status")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> SagaList:
        """Counts of every status, and the newest sagas (of one status, if asked)."""
        found = await store.listed(pool, state.value if state else None, limit)
        return SagaList(
            counts=await store.counts(pool),
            sagas=[
                SagaSummary(
                    order_id=s.order_id,
                    status=s.status,
                    reason=s.reason,
                    deadline_at=s.deadline_at,
                    updated_at=s.history[-1].at if s.history else None,
                )
                for s in found
            ],
        )

    return routes
