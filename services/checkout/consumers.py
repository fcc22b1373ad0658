"""Checkout's subscription table: topic → message type → handler (the one place to look)."""

from __future__ import annotations

from functools import partial

from schemas.checkout.v1 import ConfirmOrder, RejectOrder
from services.checkout.handlers import confirm_order, reject_order
from services.checkout.ports import CheckoutUnitOfWork
from services.checkout.settings import CheckoutSettings
from shared.kafka.consumer import Subscription


def subscriptions(settings: CheckoutSettings) -> list[Subscription[CheckoutUnitOfWork]]:
    commands, events = settings.topic("checkout.commands"), settings.topic("checkout.events")
    return [
        Subscription(commands, ConfirmOrder, partial(confirm_order, events_topic=events)),
        Subscription(commands, RejectOrder, partial(reject_order, events_topic=events)),
    ]
