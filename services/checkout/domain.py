"""The Order aggregate and pricing: pure rules, no I/O.

Life cycle: placed → confirmed | rejected | cancelled; the last three are terminal. A command
asking for the state the order is already in changes nothing (safe to repeat); a command that
contradicts a terminal state is refused with an OrderRuleViolation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from schemas.checkout.v1 import OrderCancelled, OrderConfirmed, OrderRejected
from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.registry import Message
from shared.aggregate import Aggregate, DomainError


class OrderStatus(StrEnum):
    PLACED = "placed"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class OrderRuleViolation(DomainError):
    """The order's current state forbids the command."""


class UnknownSkuError(DomainError):
    def __init__(self, skus: Sequence[str]) -> None:
        super().__init__(f"unknown SKU: {', '.join(skus)}")
        self.skus = list(skus)


class MixedCurrencyError(DomainError):
    """One order is priced in one currency."""


@dataclass(frozen=True)
class Price:
    unit_price_cents: int
    currency: str


@dataclass(frozen=True)
class PricedOrder:
    lines: list[OrderLine]
    currency: str
    total_cents: int


def price(requested: Sequence[tuple[str, int]], catalogue: Mapping[str, Price]) -> PricedOrder:
    """Prices come from our catalogue only, never from the client."""
    unknown = [sku for sku, _ in requested if sku not in catalogue]
    if unknown:
        raise UnknownSkuError(unknown)
    currencies = {catalogue[sku].currency for sku, _ in requested}
    if len(currencies) != 1:
        raise MixedCurrencyError(f"products priced in {', '.join(sorted(currencies))}")
    lines = [
        OrderLine(
            sku=sku,
            quantity=qty,
            unit_price_cents=catalogue[sku].unit_price_cents,
            line_total_cents=qty * catalogue[sku].unit_price_cents,
        )
        for sku, qty in requested
    ]
    return PricedOrder(lines, currencies.pop(), sum(line.line_total_cents for line in lines))


class Order(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.status: OrderStatus | None = None
        self.customer_id = ""
        self.lines: list[OrderLine] = []
        self.currency = ""
        self.total_cents = 0
        self.reason: str | None = None

    @classmethod
    def place(cls, order_id: str, customer_id: str, priced: PricedOrder) -> Order:
        order = cls(order_id)
        order._record(
            OrderPlaced(
                order_id=order_id,
                customer_id=customer_id,
                lines=priced.lines,
                currency=priced.currency,
                total_cents=priced.total_cents,
            )
        )
        return order

    def confirm(self) -> None:
        if self.status is OrderStatus.CONFIRMED:
            return
        self.ensure_open("confirm")
        self._record(OrderConfirmed(order_id=self.id))

    def reject(self, reason: str) -> None:
        if self.status is OrderStatus.REJECTED:
            return
        self.ensure_open("reject")
        self._record(OrderRejected(order_id=self.id, reason=reason))

    def cancel(self, reason: str) -> None:
        if self.status is OrderStatus.CANCELLED:
            return
        self.ensure_open("cancel")
        self._record(OrderCancelled(order_id=self.id, reason=reason))

    def ensure_open(self, action: str) -> None:
        if self.status is not OrderStatus.PLACED:
            raise OrderRuleViolation(f"cannot {action} order {self.id}: it is {self.status}")

    def apply(self, event: Message) -> None:
        match event:
            case OrderPlaced():
                self.status = OrderStatus.PLACED
                self.customer_id = event.customer_id
                self.lines = list(event.lines)
                self.currency = event.currency
                self.total_cents = event.total_cents
            case OrderConfirmed():
                self.status = OrderStatus.CONFIRMED
            case OrderRejected(reason=reason):
                self.status, self.reason = OrderStatus.REJECTED, reason
            case OrderCancelled(reason=reason):
                self.status, self.reason = OrderStatus.CANCELLED, reason
            case _:
                super().apply(event)
