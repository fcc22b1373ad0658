"""Inventory contracts, version 1. Published: never edit, add a version instead."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Id, Quantity, Reason, Sku
from schemas.registry import REGISTRY, Message


class StockLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: Sku
    quantity: Quantity


class Shortage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: Sku
    requested: int = Field(ge=1)
    available: int = Field(ge=0)


@REGISTRY.register
class ReserveStock(Message):
    """Command: reserve every line for the order, or none of them."""

    TYPE = "ReserveStock"
    VERSION = 1

    order_id: Id
    lines: list[StockLine] = Field(min_length=1, max_length=50)


@REGISTRY.register
class ReleaseStock(Message):
    """Command: give back whatever the order holds (a no-op when it holds nothing)."""

    TYPE = "ReleaseStock"
    VERSION = 1

    order_id: Id
    reason: Reason


@REGISTRY.register
class StockReserved(Message):
    TYPE = "StockReserved"
    VERSION = 1

    order_id: Id
    lines: list[StockLine] = Field(min_length=1, max_length=50)


@REGISTRY.register
class StockReservationFailed(Message):
    TYPE = "StockReservationFailed"
    VERSION = 1

    order_id: Id
    reason: Reason
    shortages: list[Shortage] = Field(max_length=50)


@REGISTRY.register
class StockReleased(Message):
    TYPE = "StockReleased"
    VERSION = 1

    order_id: Id
    lines: list[StockLine] = Field(max_length=50)


@REGISTRY.register
class StockLevelChanged(Message):
    """Keyed by SKU (not by order): the read side's stock levels."""

    TYPE = "StockLevelChanged"
    VERSION = 1

    sku: Sku
    on_hand: int = Field(ge=0)
    reserved: int = Field(ge=0)
    available: int = Field(ge=0)
