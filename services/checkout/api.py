"""HTTP entry points: thin translation between HTTP and the command and query buses."""

# No `from __future__ import annotations`: FastAPI evaluates the route annotations, and
# `Authenticated` is local to `orders_router`.

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.checkout.domain import MixedCurrencyError, OrderRuleViolation, UnknownSkuError
from services.checkout.handlers import (
    CancelOrder,
    GetOrder,
    IdempotencyKeyReused,
    NotOrderOwner,
    OrderNotFound,
    Placed,
    PlaceOrder,
)
from services.checkout.models import (
    CancelOrderRequest,
    ErrorMessage,
    OrderView,
    PlaceOrderRequest,
)
from shared.auth import Principal
from shared.buses import CommandBus, QueryBus
from shared.observability.tracing import tag_order
from shared.ports import ConcurrencyError


@dataclass(frozen=True)
class Buses:
    commands: CommandBus
    queries: QueryBus


def _buses(request: Request) -> Buses:
    return cast(Buses, request.app.state.buses)


Dispatch = Annotated[Buses, Depends(_buses)]

OrderId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="the id `POST /orders` returned",
        examples=["3f0c8a52-4be5-4f7e-9a77-2f1f5a3e9c10"],
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="a new unique value (e.g. a UUID) per order, sent again only to retry it:"
        " retrying with the same key returns the first answer and writes nothing; the key is"
        " scoped to the customer",
        # A placeholder, deliberately not a valid key: a realistic example gets copied, and every
        # client copying it shares one key (schema-driven tools skip an invalid example).
        examples=["<new UUID per order>"],
    ),
]


def _error(description: str, example: str) -> dict[str, Any]:
    return {
        "model": ErrorMessage,
        "description": description,
        "content": {"application/json": {"example": {"detail": example}}},
    }


UNAUTHORIZED = _error("no bearer token, or an invalid one", "a bearer token is required")
NOT_FOUND = _error("no such order, or not one of yours", "order 3f0c8a52-… not found")
TOO_LARGE = _error("request body over the size limit", "request body exceeds 65536 bytes")
MALFORMED = _error(
    "the body is not parseable (e.g. not UTF-8), or Content-Length is not a number",
    "There was an error parsing the body",
)
ETAG = {
    "ETag": {
        "description": "the order's version, quoted: the consistency token for read-your-writes",
        "schema": {"type": "string", "example": '"1"'},
    }
}
PLACED_HEADERS = {
    **ETAG,
    "Location": {"description": "the order's URL", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
INVALID = {"description": "the request was refused; `detail` says what was wrong and where"}

PLACE_EXAMPLES: dict[str, Any] = {
    "two lines": {
        "summary": "tea and a cup",
        "value": {"lines": [{"sku": "TEA-001", "quantity": 2}, {"sku": "CUP-001", "quantity": 1}]},
    },
    "one line": {"summary": "a kettle", "value": {"lines": [{"sku": "KETTLE-01", "quantity": 1}]}},
}


def _with_token(response: Response, view: OrderView) -> None:
    # the order's version: the read side can be asked to wait until it has applied it
    response.headers["ETag"] = f'"{view.version}"'


def _invalid(loc: list[str | int], kind: str, msg: str, value: Any = None) -> JSONResponse:
    """A 422 in FastAPI's own validation-error shape, so clients parse one format."""
    return JSONResponse(
        {"detail": [{"type": kind, "loc": loc, "msg": msg, "input": value}]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def orders_router(authenticate: Callable[..., Awaitable[Principal]]) -> APIRouter:
    Authenticated = Annotated[Principal, Depends(authenticate)]
    router = APIRouter(
        prefix="/orders",
        tags=["orders"],
        responses={400: MALFORMED, 401: UNAUTHORIZED, 413: TOO_LARGE},
    )

    @router.post(
        "",
        summary="Place an order",
        status_code=status.HTTP_201_CREATED,
        response_model=OrderView,
        responses={
            201: {"description": "placed (or replayed)", "headers": PLACED_HEADERS},
            422: INVALID,
        },
    )
    async def place_order(
        principal: Authenticated,
        buses: Dispatch,
        response: Response,
        body: Annotated[PlaceOrderRequest, Body(openapi_examples=PLACE_EXAMPLES)],
        idempotency_key: IdempotencyKey = None,
    ) -> Any:
        """Place an order for the authenticated customer. Send SKUs and quantities; prices
        and totals come from checkout's catalogue. An unknown SKU is a 422 naming it.

        With an `Idempotency-Key`, a retry (same key, same body) answers exactly as the first
        request did (`Idempotent-Replayed: true`) and places nothing new; the same key with
        another body is a 422."""
        command = PlaceOrder(principal.subject, body, idempotency_key)
        try:
            placed: Placed = await buses.commands.execute(command)
        except UnknownSkuError as exc:
            lines = body.lines
            index = next(i for i, line in enumerate(lines) if line.sku in exc.skus)
            loc: list[str | int] = ["body", "lines", index, "sku"]
            return _invalid(loc, "unknown_sku", str(exc), lines[index].sku)
        except MixedCurrencyError as exc:
            return _invalid(["body", "lines"], "mixed_currency", str(exc))
        except IdempotencyKeyReused as exc:
            loc = ["header", "Idempotency-Key"]
            return _invalid(loc, "idempotency_key_reused", str(exc), idempotency_key)
        tag_order(placed.order.order_id)
        response.headers["Location"] = f"/orders/{placed.order.order_id}"
        if placed.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        _with_token(response, placed.order)
        return placed.order

    @router.get(
        "/{order_id}",
        summary="Read an order",
        response_model=OrderView,
        responses={200: {"description": "the order", "headers": ETAG}, 404: NOT_FOUND},
    )
    async def get_order(
        order_id: OrderId, principal: Authenticated, buses: Dispatch, response: Response
    ) -> OrderView:
        """One of your orders (any order with the `admin` scope). Another customer's order
        is a 404, exactly like an order that does not exist."""
        tag_order(order_id)
        view: OrderView = await buses.queries.execute(
            GetOrder(order_id, principal.subject, any_customer=principal.is_admin)
        )
        _with_token(response, view)
        return view

    @router.post(
        "/{order_id}/cancel",
        summary="Cancel an order",
        response_model=OrderView,
        responses={
            200: {"description": "cancelled (or already was)", "headers": ETAG},
            403: _error("admins may read, not cancel, others' orders", "only its customer…"),
            404: NOT_FOUND,
            409: _error("the order is already confirmed or rejected", "cannot cancel …"),
        },
    )
    async def cancel_order(
        order_id: OrderId,
        principal: Authenticated,
        buses: Dispatch,
        response: Response,
        body: Annotated[CancelOrderRequest | None, Body()] = None,
    ) -> OrderView:
        """Cancel one of your orders before it is confirmed. Cancelling a cancelled order
        answers with it unchanged; a confirmed or rejected one is a 409."""
        tag_order(order_id)
        reason = (body or CancelOrderRequest()).reason
        view: OrderView = await buses.commands.execute(
            CancelOrder(order_id, principal.subject, reason, any_customer=principal.is_admin)
        )
        _with_token(response, view)
        return view

    return router


def _printable(value: Any) -> Any:
    """Client input echoed in an error, made encodable: a lone surrogate (valid as a JSON
    escape, not in UTF-8) becomes its escape text, a non-finite number becomes null, an integer
    beyond 64 bits (orjson's limit) becomes its digits as text."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


async def _validation_failed(_: Request, exc: Exception) -> Response:
    # FastAPI's own handler echoes the input and fails to encode the cases above: a 500.
    errors = cast(RequestValidationError, exc).errors()
    body = orjson.dumps({"detail": _printable(jsonable_encoder(errors))})
    return Response(body, status.HTTP_422_UNPROCESSABLE_CONTENT, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    async def detail(status_code: int, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_code)

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return await detail(status.HTTP_404_NOT_FOUND, exc)

    async def forbidden(_: Request, exc: Exception) -> JSONResponse:
        return await detail(status.HTTP_403_FORBIDDEN, exc)

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return await detail(status.HTTP_409_CONFLICT, exc)

    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(OrderNotFound, not_found)
    app.add_exception_handler(NotOrderOwner, forbidden)
    app.add_exception_handler(OrderRuleViolation, conflict)
    # still losing the race after the retries: the client may simply try again
    app.add_exception_handler(ConcurrencyError, conflict)
