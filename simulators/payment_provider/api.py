"""The simulator's knobs and what it decided, over HTTP (for tests and people driving it).

No `from __future__ import annotations` here: the routes' dependencies are built inside
`router()`, and FastAPI can only resolve string annotations against module globals.
"""

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Id
from shared.auth import Principal
from shared.observability.logging import get_logger
from simulators.payment_provider.domain import Controls, Knobs, Mode, Status
from simulators.payment_provider.settings import ApprovalRate, LatencyMs
from simulators.payment_provider.store import payment_view

log = get_logger(__name__)


class KnobsView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"approval_rate": 0.5, "latency_ms": 200, "mode": "answer"}]
        }
    )

    approval_rate: float = Field(description="share of orders approved (decided per order id)")
    latency_ms: int = Field(description="delay from a decision to its answer on Kafka")
    mode: Mode = Field(description="answer, or silent: RequestPayment is never answered")


class KnobsChange(BaseModel):
    """The knobs to change; those left out (or null) keep their value."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"approval_rate": 0.5, "mode": "silent"}]}
    )

    approval_rate: ApprovalRate | None = None
    latency_ms: LatencyMs | None = None
    mode: Mode | None = None


class AnswerView(BaseModel):
    event_id: str
    type: str
    due_at: datetime
    sent_at: datetime | None = Field(description="null until Kafka acknowledged it")


class PaymentView(BaseModel):
    order_id: str
    status: Status
    customer_id: str | None
    amount_cents: int | None
    currency: str | None
    payment_id: str | None
    reason: str | None
    answers: list[AnswerView] = Field(description="every answer queued, repeats included")


def _view(knobs: Knobs) -> KnobsView:
    return KnobsView(
        approval_rate=knobs.approval_rate, latency_ms=knobs.latency_ms, mode=knobs.mode
    )


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def router(authenticate: Callable[..., Awaitable[Principal]], controls: Controls) -> APIRouter:
    routes = APIRouter(tags=["simulator"])
    Caller = Annotated[Principal, Depends(authenticate)]
    Pool = Annotated[asyncpg.Pool, Depends(_pool)]
    needs_admin: dict[int | str, dict[str, Any]] = {
        401: {"description": "no or invalid bearer token"},
        403: {"description": "the token lacks the admin scope"},
    }

    def ensure_admin(caller: Principal) -> None:
        if not caller.is_admin:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "the admin scope is required")

    @routes.get("/knobs", summary="The knobs in force")
    async def get_knobs() -> KnobsView:
        """Approval rate, latency and mode as the next request will see them."""
        return _view(controls.knobs)

    @routes.put("/knobs", summary="Turn the knobs (admin)", responses=needs_admin)
    async def put_knobs(change: KnobsChange, caller: Caller) -> KnobsView:
        """Applies from the next request handled; answers already decided keep their time.
        Kept in memory: a restart starts again from the settings."""
        ensure_admin(caller)
        controls.knobs = replace(controls.knobs, **change.model_dump(exclude_none=True))
        log.info("knobs changed", by=caller.subject, **change.model_dump(exclude_none=True))
        return _view(controls.knobs)

    @routes.get(
        "/payments/{order_id}",
        summary="What the simulator decided for an order (admin)",
        responses={**needs_admin, 404: {"description": "no request or void seen for the order"}},
    )
    async def get_payment(order_id: Id, caller: Caller, pool: Pool) -> PaymentView:
        """The order's payment and every answer queued for it, with when it was sent."""
        ensure_admin(caller)
        found = await payment_view(pool, order_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"nothing seen for order {order_id!r}")
        payment, answers = found
        return PaymentView(
            order_id=payment.order_id,
            status=payment.status,
            customer_id=payment.customer_id,
            amount_cents=payment.amount_cents,
            currency=payment.currency,
            payment_id=payment.payment_id,
            reason=payment.reason,
            answers=[
                AnswerView(
                    event_id=str(a.event_id), type=a.type, due_at=a.due_at, sent_at=a.sent_at
                )
                for a in answers
            ],
        )

    return routes
