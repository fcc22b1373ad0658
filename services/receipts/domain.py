"""Receipt arithmetic and numbering. Pure: no I/O, no framework.

Money is integer minor units (cents). Tax is charged on top of the order's subtotal at one
rate, computed once on the subtotal (not per line) and rounded half-up to a whole cent, so
the receipt's total always equals subtotal + tax exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

NUMBER_DIGITS = 8


class ReceiptError(ValueError):
    """An input that can never make a valid receipt."""


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price_cents: int
    line_total_cents: int


@dataclass(frozen=True)
class Order:
    """The local copy of an order, taken from OrderPlaced, waiting for its confirmation."""

    order_id: str
    customer_id: str
    currency: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Receipt:
    number: str
    order_id: str
    customer_id: str
    currency: str
    lines: tuple[Line, ...]
    subtotal_cents: int
    tax_rate: Decimal
    tax_cents: int
    total_cents: int
    issued_at: datetime


def tax_cents(subtotal_cents: int, rate: Decimal) -> int:
    """Tax on the subtotal, rounded half-up to a whole cent (0.5 cent rounds away from zero)."""
    if rate < 0:
        raise ReceiptError(f"tax rate must not be negative, got {rate}")
    return int((Decimal(subtotal_cents) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def receipt_number(issuer: str, sequence: int) -> str:
    """`LL-00000042`: the issuer's prefix and its gap-free sequence, zero-padded."""
    if not 1 <= sequence < 10**NUMBER_DIGITS:
        raise ReceiptError(f"receipt sequence {sequence} out of range for {issuer}")
    return f"{issuer}-{sequence:0{NUMBER_DIGITS}d}"


def issue(order: Order, number: str, tax_rate: Decimal, issued_at: datetime) -> Receipt:
    subtotal = sum(line.line_total_cents for line in order.lines)
    tax = tax_cents(subtotal, tax_rate)
    return Receipt(
        number=number,
        order_id=order.order_id,
        customer_id=order.customer_id,
        currency=order.currency,
        lines=order.lines,
        subtotal_cents=subtotal,
        tax_rate=tax_rate,
        tax_cents=tax,
        total_cents=subtotal + tax,
        issued_at=issued_at,
    )
