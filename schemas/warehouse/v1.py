"""Warehouse contracts, version 1, as the upstream warehouse publishes them."""

from __future__ import annotations

from schemas.fields import Id, Quantity, Sku
from schemas.registry import REGISTRY, Message


@REGISTRY.register
class StockReceived(Message):
    """Units of a SKU arrived; `shipment_id` is unique per arrival."""

    TYPE = "StockReceived"
    VERSION = 1

    sku: Sku
    quantity: Quantity
    shipment_id: Id
