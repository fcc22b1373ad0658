"""Receipt contracts, version 1."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.fields import Cents, Currency, Id
from schemas.registry import REGISTRY, Message


@REGISTRY.register
class ReceiptIssued(Message):
    TYPE = "ReceiptIssued"
    VERSION = 1

    order_id: Id
    customer_id: Id
    receipt_number: str = Field(
        pattern=r"^[A-Z0-9]{1,10}-[0-9]{8}$", description="e.g. LL-00000042"
    )
    currency: Currency
    subtotal_cents: Cents
    tax_cents: Cents
    total_cents: Cents
    issued_at: datetime
