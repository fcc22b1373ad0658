"""Payment contracts, version 1."""

from __future__ import annotations

from schemas.fields import Cents, Currency, Id, Reason
from schemas.registry import REGISTRY, Message


@REGISTRY.register
class RequestPayment(Message):
    """Our request to the provider to authorize the order's amount."""

    TYPE = "RequestPayment"
    VERSION = 1

    order_id: Id
    customer_id: Id
    amount_cents: Cents
    currency: Currency


@REGISTRY.register
class PaymentAuthorized(Message):
    TYPE = "PaymentAuthorized"
    VERSION = 1

    order_id: Id
    payment_id: Id
    amount_cents: Cents


@REGISTRY.register
class PaymentDeclined(Message):
    TYPE = "PaymentDeclined"
    VERSION = 1

    order_id: Id
    reason: Reason


@REGISTRY.register
class VoidPayment(Message):
    """Our request to the provider to void the order's authorization, if it has one (the
    provider answers PaymentVoided either way, so the saga never waits on silence)."""

    TYPE = "VoidPayment"
    VERSION = 1

    order_id: Id
    reason: Reason


@REGISTRY.register
class PaymentVoided(Message):
    """The provider's answer to VoidPayment: `payment_id` is the voided authorization, or
    null when the order had none (nothing to void)."""

    TYPE = "PaymentVoided"
    VERSION = 1

    order_id: Id
    payment_id: Id | None = None
