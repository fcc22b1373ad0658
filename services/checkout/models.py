"""The HTTP contract: request and response bodies, with the examples OpenAPI shows."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from schemas.fields import Cents, Currency, Id, Sku
from services.checkout.domain import Order, OrderStatus

MAX_LINES = 50
MAX_QUANTITY = 100


def _plain_text(value: str) -> str:
    # NUL cannot be stored in PostgreSQL text/jsonb and lone surrogates cannot be encoded as
    # UTF-8: refusing them here keeps them from becoming a 500 further down.
    if any((ord(c) < 32 and c not in "\t\n") or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("control characters are not allowed")
    return value


class OrderLineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Sku
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description=f"1..{MAX_QUANTITY}")


class PlaceOrderRequest(BaseModel):
    """SKUs and quantities only: prices and totals are computed by checkout."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {"lines": [{"sku": "TEA-001", "quantity": 2}, {"sku": "CUP-001", "quantity": 1}]}
            ]
        },
    )

    lines: list[OrderLineRequest] = Field(
        min_length=1, max_length=MAX_LINES, description=f"1..{MAX_LINES} lines, one per SKU"
    )

    @model_validator(mode="after")
    def _one_line_per_sku(self) -> PlaceOrderRequest:
        seen: set[str] = set()
        for line in self.lines:
            if line.sku in seen:
                raise ValueError(f"SKU {line.sku} appears on more than one line")
            seen.add(line.sku)
        return self


class CancelOrderRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [{"reason": "ordered the wrong size"}]},
    )

    reason: Annotated[str, AfterValidator(_plain_text)] = Field(
        default="cancelled by the customer", min_length=1, max_length=500
    )


class OrderLineView(BaseModel):
    sku: Sku
    quantity: int
    unit_price_cents: Cents
    line_total_cents: Cents


class OrderView(BaseModel):
    """The order as checkout knows it. `version` is the consistency token: the read side can
    wait until it has applied this version of the order."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "order_id": "3f0c8a52-4be5-4f7e-9a77-2f1f5a3e9c10",
                    "customer_id": "alice",
                    "status": "placed",
                    "lines": [
                        {
                            "sku": "TEA-001",
                            "quantity": 2,
                            "unit_price_cents": 850,
                            "line_total_cents": 1700,
                        }
                    ],
                    "currency": "EUR",
                    "total_cents": 1700,
                    "reason": None,
                    "version": 1,
                }
            ]
        },
    )

    order_id: Id
    customer_id: Id
    status: OrderStatus
    lines: list[OrderLineView]
    currency: Currency
    total_cents: Cents
    reason: str | None = Field(description="why it was rejected or cancelled")
    version: int = Field(ge=1, description="events in the order's stream so far")

    @classmethod
    def of(cls, order: Order) -> OrderView:
        assert order.status is not None  # a loaded or placed order has its OrderPlaced
        return cls(
            order_id=order.id,
            customer_id=order.customer_id,
            status=order.status,
            lines=[OrderLineView(**line.model_dump()) for line in order.lines],
            currency=order.currency,
            total_cents=order.total_cents,
            reason=order.reason,
            version=order.version,
        )


class ErrorMessage(BaseModel):
    detail: str = Field(examples=["order not found"])
