"""The read side over HTTP: orders (with read-your-writes), a customer's history, stock, and
figures for the admin scope.

Customers see their own orders only: another customer's order, or one whose `OrderPlaced` this
view has not read yet, is answered exactly as an order that does not exist (404, or 425 while
waiting for a version), so ids cannot be probed. Stock levels are for any valid token; the
figures are for the admin scope.

No `from __future__ import annotations` here: the route's dependencies are built inside
`router()`, and FastAPI can only resolve string annotations against module globals.
"""

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter

from schemas.fields import Id, Sku
from services.projection import queries
from shared.auth import Principal

MAX_STATS_DAYS = 366


class Line(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int
    line_total_cents: int


class Reservation(BaseModel):
    state: Literal["reserved", "failed", "released"]
    reason: str | None = None


class Payment(BaseModel):
    state: Literal["authorized", "declined", "voided"]
    payment_id: str | None = None
    reason: str | None = None


class Receipt(BaseModel):
    number: str
    total_cents: int
    issued_at: datetime


class Step(BaseModel):
    at: datetime
    step: str = Field(description="the event's type, e.g. StockReserved")
    detail: str | None = Field(default=None, description="a reason, a receipt number…")


class OrderView(BaseModel):
    order_id: str
    customer_id: str
    status: Literal["placed", "confirmed", "rejected", "cancelled"]
    version: int = Field(description="the order's version this view has applied (checkout's ETag)")
    status_reason: str | None = None
    placed_at: datetime
    currency: str
    total_cents: int
    lines: list[Line]
    reservation: Reservation | None
    payment: Payment | None
    receipt: Receipt | None
    timeline: list[Step]


class OrderSummary(BaseModel):
    order_id: str
    status: str
    placed_at: datetime
    currency: str
    total_cents: int
    receipt_number: str | None


class History(BaseModel):
    orders: list[OrderSummary]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )


class StockLevel(BaseModel):
    sku: str
    on_hand: int
    reserved: int
    available: int
    as_of: datetime


class Stock(BaseModel):
    levels: list[StockLevel]
    unknown: list[str] = Field(description="requested SKUs this view has no level for")


class SalesDay(BaseModel):
    day: date
    sku: str
    currency: str
    quantity: int
    revenue_cents: int
    orders: int


class OutcomesDay(BaseModel):
    day: date
    outcome: Literal["confirmed", "rejected", "cancelled"]
    reason: str = Field(description="why, for rejections; empty otherwise")
    orders: int


UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "no or invalid bearer token"}}
ADMIN_ONLY = {**UNAUTHORIZED, 403: {"description": "the token lacks the admin scope"}}
NOT_CAUGHT_UP = {
    "description": "`min_version` was asked for and the view has not applied it within the wait;"
    " `version` is what it has (0: nothing). Retry after `Retry-After` seconds.",
    "content": {
        "application/json": {
            "example": {
                "detail": "not caught up yet: order ord-1 is at version 1 here, 2 was asked for",
                "version": 1,
                "min_version": 2,
            }
        }
    },
}


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def encode_cursor(placed_at: datetime, order_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([placed_at.isoformat(), order_id])).decode()


_ORDER_ID = TypeAdapter(Id)


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a cursor names; ValueError when it is not one this service handed out
    (anything else would reach the database: a NUL in the id, a time it cannot store)."""
    refused = ValueError("not a cursor this service handed out")
    try:
        placed_at, order_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        when = datetime.fromisoformat(placed_at).astimezone(UTC)
        _ORDER_ID.validate_python(order_id)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError, OverflowError) as exc:
        raise refused from exc
    if datetime.fromisoformat(placed_at).tzinfo is None:
        raise refused
    return when, order_id


def _order_view(row: dict[str, Any], steps: list[dict[str, Any]]) -> OrderView:
    return OrderView(
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        status=row["status"],
        version=row["version"],
        status_reason=row["status_reason"],
        placed_at=row["placed_at"],
        currency=row["currency"],
        total_cents=row["total_cents"],
        lines=row["lines"],
        reservation=Reservation(state=row["reservation"], reason=row["reservation_reason"])
        if row["reservation"]
        else None,
        payment=Payment(
            state=row["payment"], payment_id=row["payment_id"], reason=row["payment_reason"]
        )
        if row["payment"]
        else None,
        receipt=Receipt(
            number=row["receipt_number"],
            total_cents=row["receipt_total_cents"],
            issued_at=row["receipt_issued_at"],
        )
        if row["receipt_number"]
        else None,
        timeline=[Step(**s) for s in steps],
    )


def _days(
    first: Annotated[date, Query(alias="from", description="first UTC day, YYYY-MM-DD")],
    last: Annotated[date, Query(alias="to", description="last UTC day, included")],
) -> tuple[date, date]:
    """The figures' `from`..`to`, both included, at most MAX_STATS_DAYS."""
    if first > last:
        raise HTTPException(422, f"from ({first}) is after to ({last})")
    if (last - first).days >= MAX_STATS_DAYS:
        raise HTTPException(422, f"from..to spans more than {MAX_STATS_DAYS} days")
    return first, last


Days = Annotated[tuple[date, date], Depends(_days)]


def router(authenticate: Callable[..., Awaitable[Principal]], *, read_wait: float) -> APIRouter:
    routes = APIRouter(tags=["read side"])
    Caller = Annotated[Principal, Depends(authenticate)]
    Pool = Annotated[asyncpg.Pool, Depends(_pool)]

    async def admin(caller: Caller) -> Principal:
        if not caller.is_admin:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "figures are for the admin scope")
        return caller

    Admin = Annotated[Principal, Depends(admin)]

    async def visible(
        pool: asyncpg.Pool, order_id: str, caller: Principal
    ) -> dict[str, Any] | None:
        row = await queries.order(pool, order_id)
        if row is None or row["placed_at"] is None:
            return None  # only other topics' facts so far: not an order anyone can see yet
        return row if caller.is_admin or row["customer_id"] == caller.subject else None

    @routes.get(
        "/orders/{order_id}",
        summary="An order as the read side sees it",
        responses={
            **UNAUTHORIZED,
            404: {"description": "no such order, or not one of yours"},
            425: NOT_CAUGHT_UP,
        },
    )
    async def get_order(
        order_id: Id,
        caller: Caller,
        pool: Pool,
        min_version: Annotated[
            int | None,
            Query(
                ge=1,
                le=1_000_000,
                description="read-your-writes: wait (boundedly) until the view has applied this"
                " version of the order, e.g. the ETag checkout answered with",
            ),
        ] = None,
    ) -> Any:
        """Status and timeline, lines, totals, reservation, payment and receipt of one order.
        With `min_version`, waits up to the configured bound for the view to apply that version,
        then answers 425 with the version it has."""
        deadline = time.monotonic() + read_wait
        pause = 0.01
        while True:
            row = await visible(pool, order_id, caller)
            if min_version is None or (row is not None and row["version"] >= min_version):
                break
            if time.monotonic() >= deadline:
                have = row["version"] if row is not None else 0
                return JSONResponse(
                    {
                        "detail": f"not caught up yet: order {order_id} is at version {have}"
                        f" here, {min_version} was asked for",
                        "version": have,
                        "min_version": min_version,
                    },
                    status_code=425,
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.1)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id!r} not found")
        return _order_view(row, await queries.timeline(pool, order_id))

    @routes.get(
        "/customers/me/orders",
        summary="The caller's orders, newest first",
        responses={
            **UNAUTHORIZED,
            422: {"description": "a bad cursor or limit"},
        },
    )
    async def my_orders(
        caller: Caller,
        pool: Pool,
        cursor: Annotated[
            str | None, Query(max_length=300, description="from `next_cursor`")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> History:
        """The caller's own orders (the token's subject), newest first, `limit` per page."""
        try:
            after = decode_cursor(cursor) if cursor else None
        except ValueError as exc:
            raise HTTPException(422, f"cursor: {exc}") from None
        rows = await queries.history(pool, caller.subject, after, limit + 1)
        page, more = rows[:limit], len(rows) > limit
        last = page[-1] if page else None
        return History(
            orders=[OrderSummary(**r) for r in page],
            next_cursor=encode_cursor(last["placed_at"], last["order_id"])
            if more and last
            else None,
        )

    @routes.get(
        "/stock/{sku}",
        summary="One SKU's stock level",
        responses={
            **UNAUTHORIZED,
            404: {"description": "no level for this SKU"},
        },
    )
    async def one_sku(sku: Sku, caller: Caller, pool: Pool) -> StockLevel:
        levels = await queries.stock_levels(pool, [sku])
        if not levels:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no stock level for {sku!r}")
        return StockLevel(**levels[0])

    @routes.get(
        "/stock",
        summary="Stock levels of several SKUs",
        responses=UNAUTHORIZED,
    )
    async def some_skus(
        caller: Caller,
        pool: Pool,
        sku: Annotated[
            list[Sku], Query(min_length=1, max_length=100, description="repeat: ?sku=A&sku=B")
        ],
    ) -> Stock:
        wanted = sorted(set(sku))
        levels = [StockLevel(**r) for r in await queries.stock_levels(pool, wanted)]
        known = {level.sku for level in levels}
        return Stock(levels=levels, unknown=[s for s in wanted if s not in known])

    @routes.get(
        "/stats/sales",
        summary="Units and revenue per SKU per day (admin)",
        responses=ADMIN_ONLY,
    )
    async def sales(caller: Admin, pool: Pool, days: Days) -> list[SalesDay]:
        """Confirmed orders' lines, counted on the UTC day each order was confirmed."""
        return [SalesDay(**r) for r in await queries.sales_per_day(pool, *days)]

    @routes.get(
        "/stats/outcomes",
        summary="Orders confirmed, rejected (by reason) and cancelled per day (admin)",
        responses=ADMIN_ONLY,
    )
    async def saga_outcomes(caller: Admin, pool: Pool, days: Days) -> list[OutcomesDay]:
        """Each order once, on the UTC day of its outcome."""
        return [OutcomesDay(**r) for r in await queries.outcomes_per_day(pool, *days)]

    return routes
