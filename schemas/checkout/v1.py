"""Checkout contracts, version 1. Published: never edit, add a version instead."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Cents, Id, Quantity, Reason, Sku
from schemas.registry import REGISTRY, Message


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: Sku
    quantity: Quantity
    unit_price_cents: Cents


@REGISTRY.register
class OrderPlaced(Message):
    """v1: the order as placed; v1 knew one currency (EUR) and no line totals."""

    TYPE = "OrderPlaced"
    VERSION = 1

    order_id: Id
    customer_id: Id
    lines: list[OrderLine] = Field(min_length=1, max_length=50)
    total_cents: Cents


@REGISTRY.register
class OrderConfirmed(Message):
    TYPE = "OrderConfirmed"
    VERSION = 1

    order_id: Id


@REGISTRY.register
class OrderRejected(Message):
    TYPE = "OrderRejected"
    VERSION = 1

    order_id: Id
    reason: Reason


@REGISTRY.register
class OrderCancelled(Message):
    TYPE = "OrderCancelled"
    VERSION = 1

    order_id: Id
    reason: Reason


RefusableCommand = Literal["ConfirmOrder", "RejectOrder"]


@REGISTRY.register
class OrderCommandRefused(Message):
    """The saga's command met an order whose state forbids it (a ConfirmOrder that lost the
    race to the customer's cancel): its outcome, not a change. The order stays as it was."""

    TYPE = "OrderCommandRefused"
    VERSION = 1

    order_id: Id
    command: RefusableCommand = Field(description="type of the refused command")
    status: Literal["placed", "confirmed", "rejected", "cancelled"] = Field(
        description="the order's status, which the command could not change"
    )
    reason: Reason


@REGISTRY.register
class ConfirmOrder(Message):
    """Command from the saga: stock is reserved and payment authorized."""

    TYPE = "ConfirmOrder"
    VERSION = 1

    order_id: Id


@REGISTRY.register
class RejectOrder(Message):
    """Command from the saga: the order cannot be fulfilled."""

    TYPE = "RejectOrder"
    VERSION = 1

    order_id: Id
    reason: Reason
