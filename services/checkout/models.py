"""The HTTP contract: request and response bodies, with the examples OpenAPI shows."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from schemas.fields import Cents, Currency, Id, Sku
from services.checkout.domain import Order, OrderStatus

MAX_LINES = 50
MAX_QUANTITY = 100
# No control character (Unicode Cc) but tab and newline. Published as the JSON Schema `pattern`
# and used as is by the validator, so the two cannot disagree; written with `\xHH` escapes only,
# which ECMA-262, Python and Rust regexes read alike. NUL cannot be stored in PostgreSQL
# text/jsonb: refused here, it never becomes a 500 further down.
PLAIN_TEXT = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
_PLAIN_TEXT = re.compile(PLAIN_TEXT)


def _plain_text(value: str) -> str:
    if _PLAIN_TEXT.fullmatch(value) is None:
        raise ValueError("control characters other than tab and newline are not allowed")
    # A lone surrogate ("\ud800" in JSON) is no Unicode text, so no pattern can name it (Rust
    # and Go engines cannot even hold one); it cannot be encoded as UTF-8 for PostgreSQL either.
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("lone surrogates are not allowed")
    return value


# Strict: a quantity is a JSON integer, as the schema says, never `true`, `"2"`, `2.0` or `1e2`.
class OrderLineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sku: Sku
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description=f"1..{MAX_QUANTITY}")


class PlaceOrderRequest(BaseModel):
    """SKUs and quantities only: prices and totals are computed by checkout."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
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
        strict=True,
        json_schema_extra={"examples": [{"reason": "ordered the wrong size"}]},
    )

    reason: Annotated[str, AfterValidator(_plain_text)] = Field(
        default="cancelled by the customer",
        min_length=1,
        max_length=500,
        description="plain text: tab and newline, but no other control character (`pattern`)"
        " and no lone surrogate",
        json_schema_extra={"pattern": PLAIN_TEXT},
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
