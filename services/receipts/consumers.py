"""The subscription table: topic → message type → handler, in one greppable place (STYLE 3)."""

from __future__ import annotations

from functools import partial

from schemas.checkout.v1 import OrderConfirmed
from schemas.checkout.v2 import OrderPlaced
from schemas.receipts.v1 import RequestReceipt
from services.receipts import handlers
from services.receipts.store import PostgresReceiptsUnitOfWork
from shared.kafka.consumer import Subscription


def subscriptions(
    checkout_events: str, receipts_commands: str, issuing: handlers.Issuing
) -> list[Subscription[PostgresReceiptsUnitOfWork]]:
    return [
        Subscription(checkout_events, OrderPlaced, handlers.keep_order),
        Subscription(
            checkout_events, OrderConfirmed, partial(handlers.issue_receipt, issuing=issuing)
        ),
        Subscription(
            receipts_commands, RequestReceipt, partial(handlers.resend_receipt, issuing=issuing)
        ),
    ]
