"""Receipts over HTTP, for the order's owner (or an admin).

No `from __future__ import annotations` here: the route's dependencies are built inside
`router()`, and FastAPI can only resolve string annotations against module globals.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Id
from services.receipts.store import receipt_with_delivery
from shared.auth import Principal


class ReceiptLine(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int
    line_total_cents: int


class ReceiptView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "LL-00000042",
                    "order_id": "ord-1",
                    "customer_id": "alice",
                    "currency": "EUR",
                    "lines": [
                        {
                            "sku": "TEA-001",
                            "quantity": 2,
                            "unit_price_cents": 450,
                            "line_total_cents": 900,
                        }
                    ],
                    "subtotal_cents": 900,
                    "tax_rate": "0.2000",
                    "tax_cents": 180,
                    "total_cents": 1080,
                    "issued_at": "2026-01-01T12:00:00Z",
                    "delivery": "delivered",
                }
            ]
        }
    )

    number: str = Field(description="gap-free per issuer, e.g. LL-00000042")
    order_id: str
    customer_id: str
    currency: str
    lines: list[ReceiptLine]
    subtotal_cents: int
    tax_rate: str = Field(description="decimal fraction charged on top of the subtotal")
    tax_cents: int = Field(description="tax on the subtotal, rounded half-up to a cent")
    total_cents: int
    issued_at: datetime
    delivery: Literal["pending", "delivered"]


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def router(authenticate: Callable[..., Awaitable[Principal]]) -> APIRouter:
    routes = APIRouter(tags=["receipts"])
    Caller = Annotated[Principal, Depends(authenticate)]
    Pool = Annotated[asyncpg.Pool, Depends(_pool)]

    @routes.get(
        "/receipts/{order_id}",
        summary="An order's receipt",
        responses={
            401: {"description": "no or invalid bearer token"},
            404: {"description": "no receipt for this order (yet), or not the caller's order"},
        },
    )
    async def get_receipt(order_id: Id, caller: Caller, pool: Pool) -> ReceiptView:
        """The receipt issued for a confirmed order. Customers see their own orders' receipts
        only; another customer's order answers 404, so ids cannot be probed."""
        found = await receipt_with_delivery(pool, order_id)
        if found is None or not (caller.is_admin or found[0].customer_id == caller.subject):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no receipt for order {order_id!r}")
        receipt, delivery = found
        return ReceiptView(
            number=receipt.number,
            order_id=receipt.order_id,
            customer_id=receipt.customer_id,
            currency=receipt.currency,
            lines=[ReceiptLine(**vars(line)) for line in receipt.lines],
            subtotal_cents=receipt.subtotal_cents,
            tax_rate=str(receipt.tax_rate),
            tax_cents=receipt.tax_cents,
            total_cents=receipt.total_cents,
            issued_at=receipt.issued_at,
            delivery="delivered" if delivery == "delivered" else "pending",
        )

    return routes
