"""The subscription table: topic → message type → the saga step, in one greppable place
(STYLE 3). Everything the saga consumes is keyed by order id on co-partitioned topics; records of
other types (StockLevelChanged, keyed by SKU) are skipped before the saga table is touched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from schemas.checkout.v1 import OrderCancelled, OrderCommandRefused, OrderConfirmed, OrderRejected
from schemas.checkout.v2 import OrderPlaced
from schemas.inventory.v1 import StockReleased, StockReservationFailed, StockReserved
from schemas.orchestrator.v1 import SagaDeadlinePassed
from schemas.payments.v1 import PaymentAuthorized, PaymentDeclined, PaymentVoided
from schemas.receipts.v1 import ReceiptIssued
from shared.envelope import Envelope
from shared.kafka.decoding import Subscription

Step = Callable[[Envelope, Any, Any], Awaitable[None]]


@dataclass(frozen=True)
class Topics:
    checkout_events: str
    inventory_events: str
    receipts_events: str
    payments_upstream: str  # as the provider's client partitioned it: re-keyed first
    payments: str  # re-keyed by order id, with our partitioner
    deadlines: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            checkout_events=prefix + "checkout.events",
            inventory_events=prefix + "inventory.events",
            receipts_events=prefix + "receipts.events",
            payments_upstream=prefix + "payments.events",
            payments=prefix + "orchestrator.payments",  # the orchestrator creates it
            deadlines=prefix + "orchestrator.deadlines",
        )

    @property
    def sources(self) -> tuple[str, ...]:
        """What the saga agent reads: every one co-partitioned by order id."""
        return (
            self.checkout_events,
            self.inventory_events,
            self.receipts_events,
            self.payments,
            self.deadlines,
        )


def subscriptions(topics: Topics, step: Step) -> list[Subscription[Any]]:
    t = topics
    return [
        *(
            Subscription(t.checkout_events, m, step)
            for m in (
                OrderPlaced,
                OrderConfirmed,
                OrderRejected,
                OrderCancelled,
                OrderCommandRefused,
            )
        ),
        *(
            Subscription(t.inventory_events, m, step)
            for m in (StockReserved, StockReservationFailed, StockReleased)
        ),
        *(
            Subscription(t.payments, m, step)
            for m in (PaymentAuthorized, PaymentDeclined, PaymentVoided)
        ),
        Subscription(t.receipts_events, ReceiptIssued, step),
        Subscription(t.deadlines, SagaDeadlinePassed, step),
    ]
