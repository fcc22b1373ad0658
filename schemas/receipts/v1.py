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


@REGISTRY.register
class RequestReceipt(Message):
    """The saga asks for a confirmed order's receipt again: its ReceiptIssued did not reach
    the saga in time. Receipts answers with the receipt it issued, under that receipt's own id
    (a saga that applied it drops the repeat); before it issued one, with nothing: the
    OrderConfirmed it has yet to read issues it."""

    TYPE = "RequestReceipt"
    VERSION = 1

    order_id: Id
