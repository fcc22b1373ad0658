"""Checkout contracts, version 2: OrderPlaced carries its currency and each line's total."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Cents, Currency, Id, Quantity, Sku
from schemas.registry import REGISTRY, Message


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: Sku
    quantity: Quantity
    unit_price_cents: Cents
    line_total_cents: Cents


@REGISTRY.register
class OrderPlaced(Message):
    """The order as placed, priced server-side."""

    TYPE = "OrderPlaced"
    VERSION = 2

    order_id: Id
    customer_id: Id
    lines: list[OrderLine] = Field(min_length=1, max_length=50)
    currency: Currency
    total_cents: Cents
